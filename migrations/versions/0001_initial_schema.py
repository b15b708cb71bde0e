"""initial schema: accounts and roles, memberships, Stripe customers, subscriptions and events,
the newsletter outbox, API tokens and the audit log.

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 10:12:20.829071
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import service.db


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.Enum('member', 'staff', 'admin', name='account_role', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('email', name=op.f('uq_accounts_email'))
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('name', name=op.f('uq_api_tokens_name')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_email', sa.String(length=320), nullable=True),
    sa.Column('action', sa.String(length=60), nullable=False),
    sa.Column('target_account_id', sa.Integer(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['accounts.id'], name=op.f('fk_audit_log_actor_id_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['target_account_id'], ['accounts.id'], name=op.f('fk_audit_log_target_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_actor_id'), ['actor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_target_account_id'), ['target_account_id'], unique=False)

    op.create_table('memberships',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('pending', 'active', 'past_due', 'paused', 'lapsed', 'canceled', 'comped', name='membership_status', native_enum=False, create_constraint=True, length=20), nullable=False),
    sa.Column('paid_through', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_at_period_end', sa.Boolean(), nullable=False),
    sa.Column('stripe_subscription_id', sa.String(length=255), nullable=True),
    sa.Column('comp_reason', sa.Text(), nullable=True),
    sa.Column('comped_until', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('comped_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('flagged_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('flag_reason', sa.Text(), nullable=True),
    sa.Column('newsletter_opt_in', sa.Boolean(), nullable=False),
    sa.Column('newsletter_status', sa.String(length=20), nullable=False),
    sa.Column('newsletter_synced_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status_changed_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_memberships_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_memberships')),
    sa.UniqueConstraint('account_id', name=op.f('uq_memberships_account_id'))
    )
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_memberships_status'), ['status'], unique=False)

    op.create_table('newsletter_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_newsletter_outbox_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_newsletter_outbox'))
    )
    with op.batch_alter_table('newsletter_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_newsletter_outbox_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_newsletter_outbox_due', ['status', 'next_attempt_at'], unique=False)

    op.create_table('stripe_customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_id', sa.String(length=255), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('snapshot_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_stripe_customers_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_customers')),
    sa.UniqueConstraint('stripe_id', name=op.f('uq_stripe_customers_stripe_id'))
    )
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_customers_account_id'), ['account_id'], unique=False)

    op.create_table('stripe_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('api_version', sa.String(length=40), nullable=True),
    sa.Column('stripe_created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('object_id', sa.String(length=255), nullable=True),
    sa.Column('customer_stripe_id', sa.String(length=255), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('received_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_stripe_events_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events')),
    sa.UniqueConstraint('stripe_id', name=op.f('uq_stripe_events_stripe_id'))
    )
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_events_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_events_customer_stripe_id'), ['customer_stripe_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_events_object_id'), ['object_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_events_type'), ['type'], unique=False)

    op.create_table('stripe_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_id', sa.String(length=255), nullable=False),
    sa.Column('customer_stripe_id', sa.String(length=255), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=40), nullable=False),
    sa.Column('price_id', sa.String(length=255), nullable=True),
    sa.Column('current_period_end', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_at_period_end', sa.Boolean(), nullable=False),
    sa.Column('cancel_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('canceled_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('snapshot_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_stripe_subscriptions_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_subscriptions')),
    sa.UniqueConstraint('stripe_id', name=op.f('uq_stripe_subscriptions_stripe_id'))
    )
    with op.batch_alter_table('stripe_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_subscriptions_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_subscriptions_customer_stripe_id'), ['customer_stripe_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('stripe_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_subscriptions_customer_stripe_id'))
        batch_op.drop_index(batch_op.f('ix_stripe_subscriptions_account_id'))

    op.drop_table('stripe_subscriptions')
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_events_type'))
        batch_op.drop_index(batch_op.f('ix_stripe_events_object_id'))
        batch_op.drop_index(batch_op.f('ix_stripe_events_customer_stripe_id'))
        batch_op.drop_index(batch_op.f('ix_stripe_events_account_id'))

    op.drop_table('stripe_events')
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_customers_account_id'))

    op.drop_table('stripe_customers')
    with op.batch_alter_table('newsletter_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_newsletter_outbox_due')
        batch_op.drop_index(batch_op.f('ix_newsletter_outbox_account_id'))

    op.drop_table('newsletter_outbox')
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_memberships_status'))

    op.drop_table('memberships')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_target_account_id'))
        batch_op.drop_index(batch_op.f('ix_audit_log_created_at'))
        batch_op.drop_index(batch_op.f('ix_audit_log_actor_id'))

    op.drop_table('audit_log')
    op.drop_table('api_tokens')
    op.drop_table('accounts')
