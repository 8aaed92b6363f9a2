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

import argparse
import difflib
import importlib
import importlib.util
import os
import re
import sys
import warnings
from typing import Any, Iterable, List, Optional, Sequence

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


def _init_arguments(class_path: str) -> List[str]:
    """The arguments ``class_path`` takes in a config, as the parser resolves them (the models'
    ``**kwargs`` included); empty when the class cannot be imported or inspected."""
    from jsonargparse import ArgumentParser

    module, _, name = class_path.rpartition(".")
    try:
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(getattr(importlib.import_module(module), name), fail_untyped=False)
    except Exception:  # noqa: BLE001 -- only a hint is lost
        return []
    return [a.dest for a in parser._actions if a.dest != "help" and not a.dest.endswith(".help")]


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean `X`?"`` for the closest candidate (compared on the last dotted part,
    among candidates with the same prefix), else ``"."``."""
    prefix, _, tail = name.rpartition(".")
    same = {c.rpartition(".")[2]: c for c in candidates if c.rpartition(".")[0] == prefix}
    close = difflib.get_close_matches(tail, list(same), n=1, cutoff=0.7)
    return f"; did you mean `{same[close[0]]}`?" if close else "."


def _parse_error_message(msg: str, options: Sequence[str] = ()) -> str:
    """One paragraph for a jsonargparse parse error, in place of its usage dump.

    Args:
        msg: the parser's error message (``argparse.ArgumentError``).
        options: the command line options the parsers accept (for "did you mean").

    Returns:
        the message :class:`ConfigError` carries.

    Examples:
        >>> msg = _parse_error_message("unrecognized arguments: --trainer.max_epohcs=3",
        ...                            ["--trainer.max_epochs", "--trainer.max_steps"])
        >>> msg.split("? ")[0]
        'Unknown command-line argument `--trainer.max_epohcs=3`; did you mean `--trainer.max_epochs`'
    """
    msg = str(msg).strip()
    unrecognized = re.match(r"unrecognized arguments: (.*)", msg, re.S)
    if unrecognized:
        given = unrecognized.group(1).split()
        hints = [f"`{g}`{_did_you_mean(g.split('=', 1)[0], options)}" for g in given]
        return (f"Unknown command-line argument{'s' if len(given) > 1 else ''} {' '.join(hints)} "
                "`lightning-discrete fit --help` lists the arguments.")
    not_accepted = re.search(r"does not accept (?:option|key) '([\w.]+)'", msg)
    if not_accepted:  # a YAML key the parser does not know
        key = not_accepted.group(1)
        return (f"Unknown configuration key `{key}`{_did_you_mean(key, [o[2:] for o in options])} "
                "`lightning-discrete fit --help` lists the arguments.")
    keys = re.findall(r'Parser key "(\w+)"', msg)
    section = keys[0] if keys else None
    classes = re.findall(r"class_path '([\w.]+)'", msg)
    owner = classes[-1] if classes else None
    short_owner = owner.rpartition(".")[2] if owner else None
    where = f" of {short_owner} (`{section}: init_args:` in YAML, `--{section}.NAME` on the command line)" \
        if owner and section else ""
    unknown = re.search(r"(?:Option|Key) '([\w.]+)' is not (?:accepted|expected)", msg)
    if unknown:
        name = unknown.group(1)
        helper = f" `--{section}.help {short_owner}` lists its arguments." if owner and section else ""
        return f"Unknown argument `{name}`{where}" + _did_you_mean(name, _init_arguments(owner) if owner else []) + helper
    leaf = keys[-1] if keys else None
    inner = msg.rsplit(f'Parser key "{leaf}"', 1)[1] if leaf else msg
    expected = [e for e in re.findall(r"Expected a <class '([\w.]+)'>", inner) if e != "NoneType"]
    given = re.search(r"(?:Given|Got) value: (.*)", inner)
    if leaf and leaf != section and expected and given:
        kinds = " or ".join(dict.fromkeys(e.rpartition(".")[2] for e in expected))
        return f"Invalid value for `{leaf}`{where}: expected {kinds}, got `{given.group(1).strip()}`."
    reason = " ".join(line.strip() for line in inner.strip(": \n").splitlines())
    return f"Invalid command line or configuration: {reason}" if not leaf else f"Invalid `{leaf}`: {reason}"


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


def _model_arguments(args: Sequence[str]) -> List[str]:
    """The ``--model.*`` arguments of a command line (``--model.x=v`` or ``--model.x v``), in order."""
    out: List[str] = []
    for i, arg in enumerate(args):
        if arg.startswith("--model."):
            out += [arg] if "=" in arg or i + 1 == len(args) else [arg, args[i + 1]]
    return out


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
    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse the command line and configs; a mistake raises :class:`ConfigError` with one
        paragraph (unknown argument, with the closest accepted name, or invalid value) instead
        of the parser's usage dump. ``--help`` and ``--print_config`` exit as usual."""
        parsers = [parser]
        for p in parsers:  # the subcommand parsers too, as they are found
            p.exit_on_error = False
            sub = getattr(p, "_subcommands_action", None)
            parsers += list(sub._name_parser_map.values()) if sub is not None else []
        self._command_line = list(args) if isinstance(args, (list, tuple)) else sys.argv[1:] if args is None else []
        try:
            super().parse_arguments(parser, args)
        except argparse.ArgumentError as err:
            options = [o for p in parsers for o in p._option_string_actions if o.startswith("--")]
            raise ConfigError(_parse_error_message(str(err), options)) from None

    def _parse_ckpt_path(self) -> None:
        """With ``--ckpt_path``, the checkpoint's hyperparameters replace the model section of the
        config files (the model must match its weights: Lightning's rule), and the ``--model.*``
        arguments of the command line apply on top of them: Lightning 2.6 lets the checkpoint
        override those too, so that ``test --ckpt_path=... --model.test_num_samples=5000``
        would silently test with the checkpoint's value."""
        before = self.config
        super()._parse_ckpt_path()
        explicit = _model_arguments(getattr(self, "_command_line", []))
        if self.config is before or not explicit:
            return
        subcommand = self.config["subcommand"]
        parser = self.parser._subcommands_action._name_parser_map[subcommand]
        self.config[subcommand] = parser.parse_args(explicit, namespace=self.config[subcommand].clone())

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
