"""The corpus stage (rules corpus, stress): the utterance manifest, audio I/O and the
acoustic stresses and non-speech inputs."""
