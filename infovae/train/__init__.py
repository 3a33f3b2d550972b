"""Training, book chapters 6-9: one ``Trainer`` for every objective of Eq. (6) (``ch4-eq6``).

Three modules, imported in this order (each only from the ones before it):

* ``config``: ``TrainConfig`` (how to train) and the registries ``OPTIMIZERS`` and
  ``SCHEDULERS`` of ``torch.optim`` by name;
* ``checkpoint``: atomic, weights-only checkpoint files (``save_checkpoint``, ``load_checkpoint``),
  a model's weights under their plain names (``plain_weights``, ``load_weights``: compiled or not)
  and a trained model rebuilt from its checkpoint (``load_model``, i.e. ``infovae.load``);
* ``evaluation``: ``evaluate``, the loss averaged over a data set;
* ``callbacks``: the ``Callback`` protocol (``on_step``, ``on_eval``, ``on_checkpoint``) and the
  ``CSVLogger`` and ``TensorBoardLogger`` (TensorBoard only where its package is installed);
* ``parallel``: joining ``torch.distributed`` under ``torchrun`` (process group, the rank's
  device and random streams);
* ``loop``: the ``Trainer`` (minibatches, the guards against non-finite values, exact resume,
  fp16 with a gradient scaler, gradient accumulation, validation with best-checkpoint keeping
  and early stopping, ``DistributedDataParallel``, compiled networks).

Every name is re-exported here: ``from infovae.train import Trainer, TrainConfig, evaluate``.
"""

from .callbacks import CSVLogger, Callback, TensorBoardLogger
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, load_model, load_weights, plain_weights, save_checkpoint
from .config import CLIPPING, OPTIMIZERS, RESUME_KEYS, SCHEDULERS, TrainConfig, make_optimizer, make_scheduler
from .evaluation import evaluate
from .loop import EvalHook, History, NonFiniteLossError, Trainer

__all__ = [
    "CHECKPOINT_FORMAT",
    "CLIPPING",
    "CSVLogger",
    "Callback",
    "EvalHook",
    "History",
    "NonFiniteLossError",
    "OPTIMIZERS",
    "RESUME_KEYS",
    "SCHEDULERS",
    "TensorBoardLogger",
    "TrainConfig",
    "Trainer",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "make_optimizer",
    "make_scheduler",
    "plain_weights",
    "save_checkpoint",
]
