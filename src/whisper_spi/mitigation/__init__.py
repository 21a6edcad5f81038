"""The mitigation stage (rules intervene_fit, intervene, fallback, mitigation,
mitigation_summary): interventions in the decoder, OpenAI's temperature fallback, the
``project`` subspace fit, and the mitigation table, verdicts and figures."""
