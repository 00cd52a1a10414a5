"""Load instruction templates: TOML files in prompts/templates, each with a name and a version."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Template:
    """A chat template: a system message, worked examples, and a user message with {placeholders}."""

    name: str
    version: int
    system: str
    examples: tuple[tuple[str, str], ...]
    user: str

    @property
    def id(self) -> str:
        """`name@version`, recorded in every result that used the template."""
        return f"{self.name}@{self.version}"

    def messages(self, **values: str) -> list[dict[str, str]]:
        """The chat turns for these placeholder values: system, examples as turns, then the user message."""
        turns = [{"role": "system", "content": self.system.strip().format(**values)}]
        for user, assistant in self.examples:
            turns += [{"role": "user", "content": user.strip()}, {"role": "assistant", "content": assistant.strip()}]
        turns.append({"role": "user", "content": self.user.strip().format(**values)})
        return turns


@cache
def load_template(name: str) -> Template:
    """Read `templates/<name>.toml`; raises KeyError naming the template if it does not exist."""
    path = resources.files("rapo.prompts") / "templates" / f"{name}.toml"
    if not path.is_file():
        raise KeyError(f"no prompt template named {name!r}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if data["name"] != name:
        raise ValueError(f"template file {name}.toml declares name {data['name']!r}")
    examples = tuple((e["user"], e["assistant"]) for e in data.get("examples", []))
    return Template(data["name"], int(data["version"]), data["system"], examples, data["user"])
