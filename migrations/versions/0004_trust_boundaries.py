"""checkout sessions, single-use account tokens, login sessions, token scopes

Reviewed: tokens made before scopes existed could read members and entitlements, so they keep
both ("entitlements:read members:read"); new tokens get what they are given (default
entitlements:read). Checkout sessions created before this revision were not recorded: a
webhook for one of them is now stored as foreign and links nothing (its customer is usually
linked already by the success page; `stripe reconcile` links the rest by email and flags them).
Customers and subscriptions linked to staff or admin accounts are unlinked.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 14:20:58.476235
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import service.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=30), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_account_tokens_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_account_tokens_token_hash'))
    )
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_tokens_account_id'), ['account_id'], unique=False)

    op.create_table('checkout_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_id', sa.String(length=255), nullable=False),
    sa.Column('ours', sa.Boolean(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('customer_stripe_id', sa.String(length=255), nullable=True),
    sa.Column('subscription_stripe_id', sa.String(length=255), nullable=True),
    sa.Column('claimed_reference', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_checkout_sessions_account_id_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkout_sessions')),
    sa.UniqueConstraint('stripe_id', name=op.f('uq_checkout_sessions_stripe_id'))
    )
    with op.batch_alter_table('checkout_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkout_sessions_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkout_sessions_customer_stripe_id'), ['customer_stripe_id'], unique=False)

    op.create_table('login_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', service.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_login_sessions_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_login_sessions_token_hash'))
    )
    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_sessions_account_id'), ['account_id'], unique=False)

    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scopes', sa.String(length=200), nullable=False,
                                      server_default='entitlements:read members:read'))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('scopes', server_default=None)

    # Before the trust rules a webhook could link a Stripe customer to a staff or admin account
    # (a foreign checkout naming its id). Such links are undone: staff never hold a customer.
    op.execute("UPDATE stripe_subscriptions SET account_id = NULL WHERE account_id IN "
               "(SELECT id FROM accounts WHERE role <> 'member')")
    op.execute("UPDATE stripe_customers SET account_id = NULL WHERE account_id IN "
               "(SELECT id FROM accounts WHERE role <> 'member')")



def downgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('scopes')

    with op.batch_alter_table('login_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_sessions_account_id'))

    op.drop_table('login_sessions')
    with op.batch_alter_table('checkout_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_customer_stripe_id'))
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_account_id'))

    op.drop_table('checkout_sessions')
    with op.batch_alter_table('account_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_tokens_account_id'))

    op.drop_table('account_tokens')
