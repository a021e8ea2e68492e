"""what a query keeps for learning: its vectors, views and candidates' frames; resolved
wrong answers; corrected labels

Revision ID: 0003
Revises: 0002_chat
Create Date: 2026-12-02 15:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002_chat'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('queries', schema=None) as batch_op:
        # float16 [n, dim] of every view (and mirror) the recogniser embedded
        batch_op.add_column(sa.Column('vectors', sa.LargeBinary(), nullable=True))
        # {"dim", "views": [[frame, box, kind]], "winner", "frames", "scores", "evidence"}
        batch_op.add_column(sa.Column('trace', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', sa.DateTime(), nullable=True))
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        # an operator's corrected label: {"episode_id", "t"} (verdict "truth")
        batch_op.add_column(sa.Column('truth', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_column('truth')
    with op.batch_alter_table('queries', schema=None) as batch_op:
        batch_op.drop_column('resolved_at')
        batch_op.drop_column('trace')
        batch_op.drop_column('vectors')
