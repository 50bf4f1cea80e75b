"""PostgreSQL access: migrations, connection helpers and keyword-only query functions."""
