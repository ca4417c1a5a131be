"""Configuration for Tortoise's own CLI (`scripts/makemigrations`); the app never imports it."""

import os

from finops_gql.config import DEFAULT_DATABASE_URL
from finops_gql.db.setup import tortoise_config

TORTOISE_ORM = tortoise_config(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
