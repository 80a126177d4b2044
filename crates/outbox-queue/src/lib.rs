//! Outbox's durable queue: the store (SQLite, PostgreSQL), schema migrations, and the
//! delivery engine that drains it over SMTP.
