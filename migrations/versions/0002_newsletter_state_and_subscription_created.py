"""newsletter desired state, subscription created

Reviewed: existing memberships get desired "none" (nothing was enqueued before); existing
subscriptions get a null Stripe `created`, filled in by their next event or `stripe reconcile`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:36:25.812731
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import service.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.add_column(sa.Column('newsletter_desired', sa.String(length=20), server_default='none', nullable=False))
        batch_op.add_column(sa.Column('newsletter_email', sa.String(length=320), nullable=True))

    with op.batch_alter_table('stripe_subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_created_at', service.db.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('stripe_subscriptions', schema=None) as batch_op:
        batch_op.drop_column('stripe_created_at')

    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_column('newsletter_email')
        batch_op.drop_column('newsletter_desired')

