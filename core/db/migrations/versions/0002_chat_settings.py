"""chat display: series cover and synopsis, per-user / per-chat settings

Revision ID: 0002_chat
Revises: 0001
Create Date: 2026-12-02 15:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_chat'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cover', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('synopsis', sa.Text(), nullable=True))
    op.create_table(
        'chat_settings',
        sa.Column('scope', sa.String(length=80), nullable=False),
        sa.Column('lang', sa.String(length=8), nullable=True),
        sa.Column('title_lang', sa.String(length=8), nullable=True),
        sa.Column('ephemeral', sa.Boolean(), nullable=True),
        sa.Column('preview', sa.Boolean(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('scope', name=op.f('pk_chat_settings')),
    )


def downgrade() -> None:
    op.drop_table('chat_settings')
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.drop_column('synopsis')
        batch_op.drop_column('cover')
