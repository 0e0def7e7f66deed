"""Banking: deposit accounts, payees, payments, history, statements and teller operations."""
