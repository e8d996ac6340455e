"""Code answers checked by chatterm itself (docs/verified-code.md):

- `examples`: the examples a question gives for a function (doctests, `f(x) == y`,
  `f(x) ➞ y`, `f(3) 返回 6`, ...), never the model's own;
- `program`: the answer's code and the checks as one program for the tool runner,
  and what its run says (passed, failed, why);
- `code`: the code of a reply that the checks run against.

Nothing here is imported while checking is off.
"""
