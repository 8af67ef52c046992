"""The ``distilloop`` command line. Commands are thin: they parse options, call one service function and
print its result. Each area registers its commands from a module in ``app/commands/``."""

from __future__ import annotations

import importlib
import pkgutil

import typer

import app.commands as commands_pkg

cli = typer.Typer(
    name="distilloop",
    help="Distil LLM classification nodes into small CPU classifiers: import, label, train, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(cli)


_register_commands()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
