"""The decode stage (rule decode): model loading and CTranslate2 conversion, the greedy
decode loop, and the capture of every decoder layer's component outputs as SVD spectra."""
