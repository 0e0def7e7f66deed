"""Platform services: settings, database, migrations, outbox, jobs, logging."""
