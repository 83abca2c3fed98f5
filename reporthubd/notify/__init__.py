"""Notices about a report's runs (issue 17, items 1 and 3): who is told (report_rules), what a
notice says (messages), the decision per lifecycle event (notifier), the sender of the notice
ledger (sender) and the deadline watch (deadlines). The pure rule model is notify_rules.py."""
