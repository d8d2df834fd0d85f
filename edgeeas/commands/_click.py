"""The one error wrapper of the command line, and the lazily loading command group.

Every expected failure is one line on stderr, never a traceback: an
:class:`~edgeeas.errors.EdgeeasUsageError` exits 2, any other project error (and the sibling
packages' ``AdbError``, ``RunnerError``, ... : :func:`edgeeas.errors.one_line_errors`) exits 1,
Ctrl-C exits 130 saying that what was written is kept.  Groups (``edgeeas``, ``edgeeas train``)
print a usage error under the usage line; :class:`OneLineCommand` (``bench``, ``latency``)
prints it alone, click's own parsing errors included.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from ..errors import EdgeeasUsageError, first_line, one_line_errors

__all__ = ["OneLineErrors", "OneLineCommand", "LazyGroup"]


class OneLineErrors:
    """Mixin for a click command or group: the project's errors as one line (see the module).

    ``usage_dump``: whether a usage error shows the usage line and the ``--help`` hint too."""

    usage_dump = True

    def make_context(self, info_name, args, parent=None, **extra):
        """click's, with a parsing error's usage dump dropped unless ``usage_dump``."""
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            if not self.usage_dump:
                e.ctx = None
            raise

    def _usage_ctx(self, ctx):
        """The context whose usage line a usage error shows: the subcommand that raised it (never
        the group's own ``COMMAND [ARGS]`` line), None where no usage is shown."""
        if not self.usage_dump:
            return None
        name = getattr(ctx, "invoked_subcommand", None)
        if isinstance(self, click.Group) and name:
            cmd = self.get_command(ctx, name)
            if cmd is None or not getattr(cmd, "usage_dump", True):
                return None
            return click.Context(cmd, info_name=name, parent=ctx)
        return ctx

    def invoke(self, ctx):
        """click's, with the project's errors turned into one-line click errors (see the module)."""
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except EdgeeasUsageError as e:
            raise click.UsageError(first_line(e), self._usage_ctx(ctx)) from None
        except one_line_errors() as e:
            raise click.ClickException(first_line(e)) from None
        except KeyboardInterrupt:
            click.echo("interrupted: everything written so far is kept; rerun the same command to resume", err=True)
            sys.exit(130)


class OneLineCommand(OneLineErrors, click.Command):
    """A command whose usage errors are a single ``Error: ...`` line (no usage dump)."""

    usage_dump = False


class LazyGroup(OneLineErrors, click.Group):
    """A group whose subcommands live in other modules, imported only when run or listed.

    ``lazy``: ``{name: "module:attribute"}``; a module that cannot be found is left out of the
    listing (an optional part not installed)."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def _lazy_available(self) -> list[str]:
        return [n for n, target in self.lazy.items() if importlib.util.find_spec(target.split(":")[0]) is not None]

    def list_commands(self, ctx):
        """The group's own commands and the lazy ones that are installed, sorted."""
        return sorted(set(super().list_commands(ctx)) | set(self._lazy_available()))

    def get_command(self, ctx, name):
        """The command ``name``, importing its module on first use; None if there is none."""
        cmd = super().get_command(ctx, name)
        if cmd is None and name in self._lazy_available():
            mod, attr = self.lazy[name].split(":")
            cmd = getattr(importlib.import_module(mod), attr)
        return cmd
