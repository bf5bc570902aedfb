"""rill's state store: SQLAlchemy 2 (async) over PostgreSQL or an embedded SQLite file."""
