import pytest

from specdraft.data.answers import extract_answer, is_equivalent, last_boxed, normalize_number


@pytest.mark.parametrize("text, scenario, expected", [
    ("48/2=24; 48+24=72 #### 72", "easy", "72"),
    ("So she earned $10.\n#### 10", "easy", "10"),
    ("#### 1,080", "easy", "1,080"),
    ("#### $18$.", "easy", "18"),
    ("#### 7\nThe answer is 7 because", "easy", "7"),
    ("the answer is 7", "easy", None),                        # GSM8K needs the separator
    ("#### ", "easy", None),
    ("So $a+b=\\boxed{0}$.", "hard", "0"),                     # MATH falls back to the last box
    ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "medium", "\\frac{1}{2}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "hard", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("x \\boxed{8+4i} #### \\boxed{9}", "hard", "9"),           # the separator wins
    ("no answer at all", "hard", None),
    ("\\fbox{12}", "medium", "12"),
])
def test_extract_answer(text, scenario, expected):
    assert extract_answer(text, scenario) == expected


def test_extract_answer_rejects_unknown_scenario():
    with pytest.raises(ValueError, match="scenario must be one of"):
        extract_answer("#### 1", "trivial")


def test_last_boxed_keeps_nested_braces_and_handles_unclosed():
    assert last_boxed("\\boxed{\\frac{a}{b^{2}}}") == "\\frac{a}{b^{2}}"
    assert last_boxed("\\boxed{unclosed") is None


@pytest.mark.parametrize("text, expected", [
    ("1,080", "1080"), ("$18", "18"), ("18.00", "18"), ("-0.50", "-0.5"), ("+7", "7"), ("007", "7"),
    ("0.0", "0"), ("50%", "50"), ("abc", None), ("1/2", None),
    ("10,\\!080", "10080"), ("1{,}000", "1000"), ("\\$150", "150"), ("125\\%", "125"),
    ("1,2", None), ("-2, 3", None), ("12,34", None), ("2 3", None),   # lists: never one number
])
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize("prediction, reference, scenario, expected", [
    ("1,080", "1080", "easy", True),
    ("$1080.0", "1080", "easy", True),
    ("1081", "1080", "easy", False),
    (None, "5", "easy", False),
    ("\\frac12", "0.5", "medium", True),
    ("\\dfrac{1}{2}", "\\frac{1}{2}", "hard", True),
    ("\\frac{2}{4}", "\\frac{1}{2}", "hard", True),
    ("[1,2)", "[1,2)", "hard", True),
    ("(1,2)", "[1,2]", "hard", False),
    ("5\\text{ cm}", "5", "hard", True),
    ("x^2+2x+1", "(x+1)^2", "hard", True),
    ("\\sqrt{2}", "1.4142", "hard", False),
    ("3", "4", "hard", False),
    # A comma between digits is a list unless it separates thousands (GSM8K writes `1,080`).
    ("12", "1,2", "hard", False),
    ("-23", "-2, 3", "hard", False),
    ("12", "1,2", "easy", False),
    ("1,000", "1000", "easy", True),
    ("1,000", "1000", "hard", True),
    ("1, 2", "1,2", "hard", True),
    ("2,1", "1,2", "hard", True),        # MATH lists of solutions are sets
    # GSM8K answers are numbers: a unit or currency around one is not wrong, a second number is.
    ("21 meters", "21", "easy", True),
    ("€28", "28", "easy", True),
    ("12 and 5", "12", "easy", False),
])
def test_is_equivalent(prediction, reference, scenario, expected):
    assert is_equivalent(prediction, reference, scenario) is expected
