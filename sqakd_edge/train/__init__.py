"""Training: the SQAKD loss, the loop (``fit``/``evaluate``), checkpoints, recipes and EWGS updates."""

from ..checkpoint import build_model_from_checkpoint, load_checkpoint, save_checkpoint
from .api import open_run_data, train_student, train_teacher
from .evaluation import evaluate
from .loop import FitResult, RunData, fit
from .loss import kd_loss, training_loss
from .recipes import get_recipe, list_recipes

__all__ = [
    "FitResult", "RunData", "build_model_from_checkpoint", "evaluate", "fit", "get_recipe", "kd_loss",
    "list_recipes", "load_checkpoint", "open_run_data", "save_checkpoint", "train_student", "train_teacher",
    "training_loss",
]
