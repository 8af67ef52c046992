"""Database: SQLModel tables, engine and sessions from settings, CRUD functions, Alembic migrations."""
