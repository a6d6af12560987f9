"""Domain labels of SeNM-VAE's training data, shared by the datasets, the network and the model.

The reference code labels the same three domains -1 / 0 / 1; here they index lists and arrays, so 0 / 1 / 2.
"""
PAIRED, SOURCE, TARGET = 0, 1, 2  # clean + noisy, clean only, noisy only
DOMAIN_NAMES = ('paired', 'source', 'target')
