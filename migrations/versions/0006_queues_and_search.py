"""queues and search: stored Stripe events wait for the worker, export jobs, search indexes

Reviewed: events stored before this revision were applied when they arrived, so they are
`done`. Subscriptions learn where their current period began (for one behind on payment, the
paid time ends there) at their next event or `stripe reconcile`; until then the period's end
stands in, as before. Each membership gets its newest live Stripe customer (lists read it without a query per
row). On PostgreSQL the email index gets text_pattern_ops (prefix search under any collation)
and names get a pg_trgm GIN index (substring search); SQLite keeps plain LIKE.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 15:16:13.821957
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import service.db


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('export_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('requested_by', sa.Integer(), nullable=True),
    sa.Column('filters', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('rows_done', sa.Integer(), nullable=False),
    sa.Column('rows_estimate', sa.Integer(), nullable=True),
    sa.Column('file_name', sa.String(length=255), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['requested_by'], ['accounts.id'], name=op.f('fk_export_jobs_requested_by_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_export_jobs'))
    )
    with op.batch_alter_table('export_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_export_jobs_queue', ['status', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_export_jobs_requested_by'), ['requested_by'], unique=False)

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_created_at'))
        batch_op.create_index('ix_accounts_created_at', ['created_at', 'id'], unique=False)

    with op.batch_alter_table('stripe_subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('current_period_start', service.db.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_customer_id', sa.String(length=255), nullable=True))
        # The paywall's read also needs the comp (a live comp is a floor): still index-only.
        batch_op.drop_index('ix_memberships_paywall', postgresql_include=['status', 'paid_through', 'level_name'])
        batch_op.create_index('ix_memberships_paywall', ['account_id'], unique=False,
                              postgresql_include=['status', 'paid_through', 'level_name', 'comped_at', 'comped_until'])
        batch_op.drop_index('ix_memberships_status')
        batch_op.create_index('ix_memberships_joined', ['created_at', 'account_id'], unique=False)
        batch_op.create_index('ix_memberships_status_joined', ['status', 'created_at', 'account_id'], unique=False)
    # The staff list orders by join date on memberships alone: the same moment as the account's.
    op.execute("UPDATE memberships SET created_at = "
               "(SELECT a.created_at FROM accounts a WHERE a.id = memberships.account_id)")

    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=20), server_default='done', nullable=False))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', service.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', service.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('applied_at', service.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_stripe_events_customer_order', ['customer_stripe_id', 'stripe_created_at'], unique=False)
        batch_op.create_index('ix_stripe_events_queue', ['status', 'next_attempt_at', 'stripe_created_at'], unique=False)
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.alter_column('status', server_default=None)

    op.execute("UPDATE memberships SET stripe_customer_id = (SELECT c.stripe_id FROM stripe_customers c "
               "WHERE c.account_id = memberships.account_id AND c.deleted = false ORDER BY c.id DESC LIMIT 1)")

    if op.get_bind().dialect.name == "postgresql":
        op.drop_index('ix_accounts_email_paywall', table_name='accounts')
        op.create_index('ix_accounts_email_paywall', 'accounts', ['email'], postgresql_include=['id'],
                        postgresql_ops={'email': 'text_pattern_ops'})
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_accounts_name_trgm ON accounts USING gin (lower(name) gin_trgm_ops)")



def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_accounts_name_trgm")
        op.drop_index('ix_accounts_email_paywall', table_name='accounts')
        op.create_index('ix_accounts_email_paywall', 'accounts', ['email'], postgresql_include=['id'])
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_index('ix_stripe_events_queue')
        batch_op.drop_index('ix_stripe_events_customer_order')
        batch_op.drop_column('applied_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('status')

    with op.batch_alter_table('stripe_subscriptions', schema=None) as batch_op:
        batch_op.drop_column('current_period_start')

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index('ix_memberships_paywall',
                            postgresql_include=['status', 'paid_through', 'level_name', 'comped_at', 'comped_until'])
        batch_op.create_index('ix_memberships_paywall', ['account_id'], unique=False,
                              postgresql_include=['status', 'paid_through', 'level_name'])
        batch_op.drop_index('ix_memberships_status_joined')
        batch_op.drop_index('ix_memberships_joined')
        batch_op.create_index('ix_memberships_status', ['status'], unique=False)
        batch_op.drop_column('stripe_customer_id')

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index('ix_accounts_created_at')
        batch_op.create_index(batch_op.f('ix_accounts_created_at'), ['created_at'], unique=False)

    with op.batch_alter_table('export_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_export_jobs_requested_by'))
        batch_op.drop_index('ix_export_jobs_queue')

    op.drop_table('export_jobs')
