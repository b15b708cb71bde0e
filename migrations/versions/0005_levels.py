"""levels: the catalogue and its price history, the level on each membership, subscription items

Reviewed: existing subscriptions get their one known price as their items (the catalogue
counts STRIPE_PRICE_ID until it is seeded from Stripe on first use, so nobody's state moves);
memberships keep their state and get their level on their next recompute (an event, or
`flask stripe reconcile`). Email addresses are unverified until a link sent to them is used.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 14:52:16.782978
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import service.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('levels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('interval', sa.String(length=10), nullable=False),
    sa.Column('stripe_price_id', sa.String(length=255), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('default', sa.Boolean(), nullable=False),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_levels')),
    sa.UniqueConstraint('stripe_price_id', name=op.f('uq_levels_stripe_price_id'))
    )
    op.create_table('service_settings',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_service_settings'))
    )
    op.create_table('level_prices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('stripe_price_id', sa.String(length=255), nullable=False),
    sa.Column('level_id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.String(length=255), nullable=True),
    sa.Column('amount', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('interval', sa.String(length=10), nullable=False),
    sa.Column('created_at', service.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['level_id'], ['levels.id'], name=op.f('fk_level_prices_level_id_levels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_level_prices')),
    sa.UniqueConstraint('stripe_price_id', name=op.f('uq_level_prices_stripe_price_id'))
    )
    with op.batch_alter_table('level_prices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_level_prices_level_id'), ['level_id'], unique=False)

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_verified_at', service.db.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('level_name', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('level_amount', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('level_currency', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('level_interval', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('monthly_value', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('paying_twice', sa.Boolean(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_memberships_paying_twice'), ['paying_twice'], unique=False)
        # The paywall now answers the level too: keep its read index-only on PostgreSQL.
        batch_op.drop_index('ix_memberships_paywall', postgresql_include=['status', 'paid_through'])
        batch_op.create_index('ix_memberships_paywall', ['account_id'], unique=False,
                              postgresql_include=['status', 'paid_through', 'level_name'])

    # One live token per name: a revoked token's name may be reused by its replacement.
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_constraint('uq_api_tokens_name', type_='unique')
        batch_op.create_index('uq_api_tokens_live_name', ['name'], unique=True,
                              sqlite_where=sa.text('revoked_at IS NULL'), postgresql_where=sa.text('revoked_at IS NULL'))

    with op.batch_alter_table('stripe_subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('items', sa.JSON(), nullable=False, server_default='[]'))
    subscriptions = sa.table('stripe_subscriptions', sa.column('id', sa.Integer()),
                             sa.column('price_id', sa.String()), sa.column('items', sa.JSON()))
    bind = op.get_bind()
    for sub_id, price_id in bind.execute(sa.select(subscriptions.c.id, subscriptions.c.price_id)
                                         .where(subscriptions.c.price_id.is_not(None))).all():
        bind.execute(subscriptions.update().where(subscriptions.c.id == sub_id)
                     .values(items=[{"price": price_id}]))
    with op.batch_alter_table('stripe_subscriptions', schema=None) as batch_op:
        batch_op.alter_column('items', server_default=None)



def downgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_index('uq_api_tokens_live_name')
        batch_op.create_unique_constraint('uq_api_tokens_name', ['name'])
    with op.batch_alter_table('stripe_subscriptions', schema=None) as batch_op:
        batch_op.drop_column('items')

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index('ix_memberships_paywall', postgresql_include=['status', 'paid_through', 'level_name'])
        batch_op.create_index('ix_memberships_paywall', ['account_id'], unique=False,
                              postgresql_include=['status', 'paid_through'])
        batch_op.drop_index(batch_op.f('ix_memberships_paying_twice'))
        batch_op.drop_column('paying_twice')
        batch_op.drop_column('monthly_value')
        batch_op.drop_column('level_interval')
        batch_op.drop_column('level_currency')
        batch_op.drop_column('level_amount')
        batch_op.drop_column('level_name')

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('email_verified_at')

    with op.batch_alter_table('level_prices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_level_prices_level_id'))

    op.drop_table('level_prices')
    op.drop_table('service_settings')
    op.drop_table('levels')
