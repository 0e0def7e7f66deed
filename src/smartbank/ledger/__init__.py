"""The double-entry ledger: accounts, transfers (single-phase, pending, posted, voided), balances."""
