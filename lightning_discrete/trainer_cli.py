"""The LightningCLI behind ``lightning-discrete fit|validate|test|predict``.

:class:`DiscreteCLI` is LightningCLI in subclass mode: the model is any
:class:`~lightning_discrete.models.DiscreteModule` and the data any
``LightningDataModule``, chosen in YAML by ``class_path`` (short names such as
``StochasticBinaryNetwork`` or ``FashionMNISTDataModule`` work). The resolved config is
saved next to each run (``config.yaml``). Runs log to CSV always and to TensorBoard when
``tensorboard`` is installed (:func:`default_loggers`), unless the config sets
``trainer.logger`` itself. Configuration mistakes (an unknown estimator, a temperature
<= 0, ...) raise :class:`ConfigError` with a one-paragraph message naming the value and
the fix.

This module knows nothing of the other subcommands: the console entry point that
dispatches them is :mod:`lightning_discrete.cli`; the sweep runner
(:mod:`lightning_discrete.sweep`) builds its trials with :func:`cli_main`. The layers
are described in ``docs/design.md``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import warnings
from typing import Any, List, Optional, Sequence

from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from typing_extensions import override

from .models import DiscreteModule  # importing .models registers the model classes for short names

__all__ = ["PROGRESS_REFRESH_RATE", "ConfigError", "DiscreteCLI", "cli_main", "default_loggers"]

# Optional parts: imported so that their classes resolve by short name in YAML.
for _mod in (
    "lightning_discrete.data",
    "lightning_discrete.callbacks",
    "lightning_discrete.models.logic_gate_network",
    "lightning_discrete.metrics",
):
    try:
        importlib.import_module(_mod)
    except ImportError:  # torchvision missing, or a part not installed
        pass

PROGRESS_REFRESH_RATE = 10
"""Steps between redraws of the progress bar the CLI adds (Lightning's default is 1)."""

DESCRIPTION = (
    "Train networks with discrete variables (lightning_discrete). Subcommands: fit, validate, test, "
    "predict (LightningCLI; see `lightning-discrete fit --help`), sweep (temperature sweeps; "
    "`lightning-discrete sweep --help`), import-idx and import-mnist-pickle (offline datasets; "
    "`lightning-discrete import-idx --help`). First run: `lightning-discrete fit --config recipes/quickstart.yaml`."
)
"""The description ``lightning-discrete --help`` prints."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names it and says how to fix it.

    Examples:
        >>> err = ConfigError("`tau_b` must be > 0")
        >>> isinstance(err, ValueError), str(err)
        (True, '`tau_b` must be > 0')
    """


def _config_message(err: BaseException, cli: Optional["DiscreteCLI"] = None) -> str:
    msg = str(err).strip().rstrip(".")
    # the names the models' own messages put in backticks, e.g. "`tau_f` must be ..."
    names = [n for n in re.findall(r"`(\w+)`", msg) if n != "tau"] or re.findall(r"`(\w+)`", msg)
    where = "model"
    if cli is not None and names:
        cfg = cli.config.get(cli.subcommand) if cli.subcommand else cli.config
        data_args = (cfg.get("data") or {}).get("init_args") or {} if cfg is not None else {}
        if names[0] in data_args:
            where = "data"
    if names:
        arg = names[0]
        fix = (
            f"fix `{arg}` in your YAML config (under `{where}: init_args:`) or override it on the command line "
            f"with `--{where}.{arg}=VALUE`"
        )
    else:
        fix = "fix the value in your YAML config or override it on the command line (`--model.NAME=VALUE`)"
    return (
        f"Invalid configuration: {msg}. To fix it, {fix}; `--print_config` shows the resolved configuration "
        f"and `--model.help CLASS` lists a model's arguments."
    )


def _root_cause(err: BaseException) -> BaseException:
    """jsonargparse may wrap an ``__init__`` error; return the innermost ValueError/TypeError."""
    seen = err
    while True:
        nxt = seen.__cause__ or seen.__context__
        if nxt is None or not isinstance(nxt, (ValueError, TypeError)):
            return seen
        seen = nxt


def default_loggers(save_dir: str) -> List[Logger]:
    """The loggers of a run whose config does not set ``trainer.logger``.

    A :class:`~lightning.pytorch.loggers.CSVLogger` always (``metrics.csv``, read by
    :class:`~lightning_discrete.callbacks.TrainingSummary`), then a
    :class:`~lightning.pytorch.loggers.TensorBoardLogger` when the ``tensorboard`` package
    is installed (``pip install lightning_discrete[tensorboard]``). Both write into the
    same ``<save_dir>/lightning_logs/version_N/`` folder, where the checkpoints go too.

    Args:
        save_dir: the run folder (the trainer's ``default_root_dir``).

    Returns:
        the loggers, the CSV logger first (``trainer.log_dir`` is its folder).

    Examples:
        >>> import tempfile
        >>> loggers = default_loggers(tempfile.mkdtemp())
        >>> type(loggers[0]).__name__, loggers[0].name
        ('CSVLogger', 'lightning_logs')
        >>> all(logger.version == loggers[0].version for logger in loggers)
        True
    """
    csv = CSVLogger(save_dir=save_dir)
    loggers: List[Logger] = [csv]
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(save_dir=save_dir, name=csv.name, version=csv.version))
    return loggers


class DiscreteCLI(LightningCLI):
    """LightningCLI for :class:`DiscreteModule` models and any ``LightningDataModule``.

    Differences from the plain LightningCLI: subclass mode for model and data, the
    optimizer and LR scheduler are the model's own ``optimizer`` / ``lr_scheduler``
    arguments (``--model.optimizer``; no top-level ``--optimizer``), the config is
    saved with ``overwrite=True``, the progress bar redraws every
    :data:`PROGRESS_REFRESH_RATE` steps (unless the config has its own), a config
    without ``trainer.logger`` logs with :func:`default_loggers` (CSV, plus TensorBoard
    when installed), and invalid values raise :class:`ConfigError` with a readable
    message.

    Args:
        model_class: base class of the models the config may choose.
        datamodule_class: base class of the datamodules the config may choose.
        subclass_mode_model: choose the model by ``class_path`` (any subclass).
        subclass_mode_data: choose the datamodule by ``class_path`` (any subclass).
        save_config_kwargs: passed to ``SaveConfigCallback``; ``overwrite`` defaults to True.
        auto_configure_optimizers: add LightningCLI's top-level ``--optimizer`` (off: the
            models take ``optimizer`` / ``lr_scheduler`` arguments themselves).
        parser_kwargs: passed to the parser; ``description`` defaults to the command's.
        **kwargs: any other LightningCLI argument (``args``, ``run``, ``trainer_defaults``, ...).

    Examples:
        >>> cli = DiscreteCLI(args=["--model=StochasticBinaryNetwork", "--model.input_dim=64",
        ...     "--model.hidden_dims=[8]", "--data=DigitsDataModule", "--trainer.logger=false",
        ...     "--trainer.enable_checkpointing=false"], run=False)
        >>> type(cli.model).__name__, cli.model.hparams.estimator
        ('StochasticBinaryNetwork', 'decoupled_st')
    """

    def __init__(
        self,
        model_class: Any = DiscreteModule,
        datamodule_class: Any = LightningDataModule,
        *,
        subclass_mode_model: bool = True,
        subclass_mode_data: bool = True,
        save_config_kwargs: Optional[dict] = None,
        auto_configure_optimizers: bool = False,
        parser_kwargs: Optional[dict] = None,
        **kwargs: Any,
    ) -> None:
        parser_kwargs = dict(parser_kwargs or {})
        parser_kwargs.setdefault("description", DESCRIPTION)
        super().__init__(
            model_class,
            datamodule_class,
            subclass_mode_model=subclass_mode_model,
            subclass_mode_data=subclass_mode_data,
            save_config_kwargs={"overwrite": True, **(save_config_kwargs or {})},
            auto_configure_optimizers=auto_configure_optimizers,
            parser_kwargs=parser_kwargs,
            **kwargs,
        )

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer of the config, with the CLI's defaults for what the config leaves open.

        A progress bar that redraws every :data:`PROGRESS_REFRESH_RATE` steps unless the
        config brings its own progress bar or turns it off (redrawing every step costs ~5%
        of a small model's epoch), and :func:`default_loggers` when ``trainer.logger`` is
        unset (or ``true``).

        Args:
            **kwargs: Trainer arguments that override the config's.

        Returns:
            the Trainer.
        """
        config = self._get(self.config_init, "trainer", default={}) or {}
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(cb, ProgressBar) for cb in callbacks
        ):
            kwargs.setdefault("callbacks", [*callbacks, TQDMProgressBar(refresh_rate=PROGRESS_REFRESH_RATE)])
        if config.get("logger") in (None, True):
            kwargs.setdefault("logger", default_loggers(config.get("default_root_dir") or os.getcwd()))
        return super().instantiate_trainer(**kwargs)

    @override
    def instantiate_classes(self) -> None:
        """Instantiate model, data and trainer; invalid values raise :class:`ConfigError`."""
        try:
            super().instantiate_classes()
        except ConfigError:
            raise
        except (ValueError, TypeError) as err:
            raise ConfigError(_config_message(_root_cause(err), self)) from None


def cli_main(args: Optional[Sequence[str]] = None, run: bool = True, **kwargs: Any) -> DiscreteCLI:
    """Build (and with ``run=True`` run) the :class:`DiscreteCLI`; exceptions propagate.

    Args:
        args: the command line without the program name (``None``: ``sys.argv[1:]``),
            e.g. ``["fit", "--config", "recipes/quickstart.yaml"]``; with ``run=False`` it
            has no subcommand.
        run: run the subcommand; ``False`` only instantiates model, data and trainer.
        **kwargs: passed to :class:`DiscreteCLI`.

    Returns:
        the CLI object (``cli.model``, ``cli.datamodule``, ``cli.trainer``, ``cli.config``).

    Examples:
        >>> cli = cli_main(["--model=StochasticBinaryNetwork", "--model.input_dim=64",
        ...     "--model.hidden_dims=[8]", "--model.tau_f=0.5", "--data=DigitsDataModule",
        ...     "--trainer.logger=false", "--trainer.enable_checkpointing=false"], run=False)
        >>> [float(m.tau_f) for m in cli.model.discrete_modules()]
        [0.5]
    """
    with warnings.catch_warnings():
        # LightningCLI warns when `args` is given while sys.argv has arguments (pytest, sweeps)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return DiscreteCLI(args=None if args is None else list(args), run=run, **kwargs)
