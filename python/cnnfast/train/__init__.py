"""Training: the fit() loop, evaluation, and transfer learning.

>>> from cnnfast import data, models, optim, train
>>> x, y = data.load_digits()                                        # doctest: +SKIP
>>> net = models.lenet5(rng=0)
>>> history = train.fit(net, (x, y), "cross_entropy", optim.Adam(net.parameters(), 2e-3), epochs=10,
...                     seed=0)                                      # doctest: +SKIP
"""

from . import transfer
from .fit import History, evaluate, fit
from .transfer import (FeatureClassifier, feature_extractor, fine_tune_groups, find_head, freeze, new_classifier,
                       replace_head, unfreeze)

__all__ = ["FeatureClassifier", "History", "evaluate", "feature_extractor", "fine_tune_groups", "find_head", "fit",
           "freeze", "new_classifier", "replace_head", "transfer", "unfreeze"]
