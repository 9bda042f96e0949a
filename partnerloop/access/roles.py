"""Staff roles and what each may do: the one permission matrix that pages and
the API both enforce, server-side.

- owner: everything, including staff accounts and connectors.
- manager: runs the program day to day: affiliates, commissions, connectors.
- finance: money: commissions and payouts; reads the rest; never connectors.
- analyst: reads everything, changes nothing.
"""

from __future__ import annotations

import enum


class Permission(enum.StrEnum):
    READ = "read"  # dashboards, reports, lists, CSV exports
    MANAGE_AFFILIATES = "manage_affiliates"  # approve, reject, suspend, overrides
    REVIEW_COMMISSIONS = "review_commissions"  # approve or decline, with a reason
    MANAGE_PAYOUTS = "manage_payouts"
    MANAGE_CONNECTORS = "manage_connectors"  # shops, CRMs, webhooks, mappings, replays
    MANAGE_PROGRAM = "manage_program"  # terms, branding, domains
    MANAGE_STAFF = "manage_staff"  # staff accounts and their roles


class Role(enum.StrEnum):
    OWNER = "owner"
    MANAGER = "manager"
    FINANCE = "finance"
    ANALYST = "analyst"


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.MANAGER: frozenset(
        {
            Permission.READ,
            Permission.MANAGE_AFFILIATES,
            Permission.REVIEW_COMMISSIONS,
            Permission.MANAGE_CONNECTORS,
            Permission.MANAGE_PROGRAM,
        }
    ),
    Role.FINANCE: frozenset(
        {Permission.READ, Permission.REVIEW_COMMISSIONS, Permission.MANAGE_PAYOUTS}
    ),
    Role.ANALYST: frozenset({Permission.READ}),
}


def allows(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]
