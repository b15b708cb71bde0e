"""newsletter desired state and provider email

Reviewed: existing rows get desired "none" (nothing enqueued yet), which is what they had.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:28:47.845303
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



def downgrade() -> None:
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_column('newsletter_email')
        batch_op.drop_column('newsletter_desired')

