"""``python -m client`` (also the ``rill`` console script): the command line; see :mod:`client._cli`."""

from client._cli import app

__all__ = ["main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
