"""An example application of the rill platform (see README.md beside this file)."""
