"""``python -m client`` (also the ``rill`` console script): the command line; see :mod:`client._cli`."""

import sys

__all__ = ["main"]


def main() -> None:
    try:
        from client._cli import app
    except ModuleNotFoundError as error:  # the library installed without the command line's extra
        if error.name not in ("typer", "rich"):
            raise
        sys.exit(f"rill: the command line needs {error.name}: pip install 'rill-grpc[cli]'")
    app()


if __name__ == "__main__":
    main()
