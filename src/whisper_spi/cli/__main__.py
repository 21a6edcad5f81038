"""``python -m whisper_spi.cli``, as the tests and benches run the command."""

import sys

from whisper_spi.cli import main

sys.exit(main())
