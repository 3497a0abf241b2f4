"""Small multi-turn agent conversations used across the tests."""

SYSTEM = {"role": "system", "content": "You are a software engineering agent. Use the bash tool."}
TASK = {"role": "user", "content": "Fix the bug: pluralize('box') returns 'boxs' instead of 'boxes'."}


def trajectory(variant: int, turns: int = 2) -> list[dict]:
    msgs = [SYSTEM, TASK]
    for t in range(turns):
        msgs.append({"role": "assistant", "content": f"<function=bash>grep -n plural src/{variant}_{t}.py</function>"})
        msgs.append({"role": "tool", "content": f"src/{variant}_{t}.py:{10 + t}: def pluralize(word):"})
    msgs.append({"role": "assistant", "content": f"<function=submit>variant {variant}</function>"})
    return msgs
