"""From spectra to the paper's tables, one module per workflow rule plus shared helpers.

* :mod:`.options`: the metric options and which stages each affects;
* :mod:`.spectra`, :mod:`.observables`: the observables of spectra, and the one kernel that
  computes every observable of the registry;
* :mod:`.layer_metrics` (rule layer_metrics): the observables of every stored spectrum;
* :mod:`.pairs` (rule pairs): clean/stressed pairs kept at the WER threshold, and counts;
* :mod:`.pooled` (rule pooled): the pooled scope of one model x layer, and its summary;
* :mod:`.utterance`: the utterance scope (per-pair deltas, bootstrap over pairs);
* :mod:`.tables` (rule tables): both scopes' summaries, Tables 1 and 2, their files;
* :mod:`.bootstrap`, :mod:`.gram`, :mod:`.frames`, :mod:`.markdown`: shared helpers.

Deltas, stressed vs the clean twin: ``Delta N_eff % = 100 (s - c) / c``; the other
observables' deltas are differences ``s - c``.
"""
