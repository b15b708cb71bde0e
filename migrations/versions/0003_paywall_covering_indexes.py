"""paywall covering indexes, and the join-date index the staff list sorts by

Reviewed: INCLUDE columns apply on PostgreSQL (index-only scans for the entitlement check);
SQLite gets plain indexes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:30:56.491733
"""
from __future__ import annotations

from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index('ix_accounts_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_accounts_email_paywall', ['email'], unique=False, postgresql_include=['id'])

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index('ix_memberships_paywall', ['account_id'], unique=False, postgresql_include=['status', 'paid_through'])



def downgrade() -> None:
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index('ix_memberships_paywall', postgresql_include=['status', 'paid_through'])

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index('ix_accounts_email_paywall', postgresql_include=['id'])
        batch_op.drop_index('ix_accounts_created_at')

