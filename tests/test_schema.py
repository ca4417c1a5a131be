from pathlib import Path

from finops_gql.graphql.schema import schema


def test_schema_file_matches_schema() -> None:
    printed = schema.as_str() + "\n"
    on_disk = (Path(__file__).parent.parent / "schema.graphql").read_text(encoding="utf-8")
    assert on_disk == printed, "schema.graphql is stale: run scripts/update-schema"
