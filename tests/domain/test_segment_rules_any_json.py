"""Whatever JSON a marketer sends as a rule, parsing either gives a rule or a ``RuleError`` naming a
path inside it (a 422), never another exception (a 500): generated documents built from the rule
language's own words, with every JSON type in every place."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.segments import rules

WORDS = [
    *rules.KINDS,
    "all", "any", "not", "op", "value", "where", "property", "count", "within_days", "times",
    *sorted(rules.TRAIT_OPS), *rules.COUNT_OPS, *rules.TIERS, *rules.RFM_DIMENSIONS, *rules.MESSAGE_ACTIONS,
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(WORDS),
    st.sampled_from(["2026-02-30", "2026-01-01", "", "x" * 300, "9999-12-31", "plan"]),
    st.text(max_size=5),
)
# The fields each kind takes besides its own (a condition with others stops at "unknown field").
KIND_FIELDS = {
    "trait": ["op", "value"],
    "rfm": ["op", "value"],
    "event": ["where", "times", "within_days"],
    "message": ["template_id", "within_days"],
}
HEADS = ["plan", "Order Completed", "key", "recency", "opened", "news", "gold"]


def _conditions(inner):
    """A condition of one kind with some of the fields it takes, each any document: near misses of
    real rules, which reach the checks of their kind."""
    tests = st.fixed_dictionaries(
        {"property": st.one_of(st.sampled_from(HEADS), inner)},
        optional={"op": st.one_of(st.sampled_from(WORDS), inner), "value": inner},
    )

    def build(kind: str):
        fields = KIND_FIELDS.get(kind, [])
        values = st.one_of(st.sampled_from([*WORDS, 1, 5, 30]), st.lists(tests, max_size=2), inner)
        return st.builds(
            lambda head, extra: {kind: head, **extra},
            st.one_of(st.sampled_from(HEADS), inner),
            st.dictionaries(st.sampled_from(fields), values, max_size=len(fields)) if fields else st.just({}),
        )

    return st.sampled_from([k for k in rules.KINDS if k not in ("all", "any", "not")]).flatmap(build)


documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(WORDS), inner, max_size=4),
        _conditions(inner),
    ),
    max_leaves=25,
)

# What is parsed: a condition, or a group of them, each holding any document (so most reach the
# checks of their kind instead of stopping at the top).
rule_documents = st.recursive(
    _conditions(documents),
    lambda inner: st.one_of(
        st.builds(
            lambda group, items: {group: items}, st.sampled_from(["all", "any"]), st.lists(inner, max_size=3)
        ),
        st.builds(lambda item: {"not": item}, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rule_documents)
def test_any_json_parses_to_a_rule_or_an_error_naming_a_path(raw):
    try:
        rules.check_size(rules.parse(raw))
    except rules.RuleError as exc:
        assert str(exc.path).startswith("rule"), exc.path
