"""The package root's public names are pinned."""

import relengine


def test_public_api() -> None:
    assert sorted(relengine.__all__) == sorted(
        [
            "CheckResponse",
            "Engine",
            "EngineConfig",
            "ObjectRef",
            "Permissionship",
            "Relationship",
            "RelationshipFilter",
            "Revision",
            "SubjectRef",
            "compile_schema",
            "errors",
            "parse_relationship",
            "print_schema",
        ]
    )
    for name in relengine.__all__:
        assert getattr(relengine, name) is not None
