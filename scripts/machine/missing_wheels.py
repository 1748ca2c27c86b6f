"""Print the wheels (of those given) whose distribution the running Python does not have installed."""
import re
import sys
from importlib.metadata import PackageNotFoundError, version


def missing(wheels: list[str]) -> list[str]:
    out = []
    for wheel in wheels:
        name = re.split(r"-\d", wheel.rsplit("/", 1)[-1], maxsplit=1)[0]
        try:
            version(name)
        except PackageNotFoundError:
            out.append(wheel)
    return out


if __name__ == "__main__":
    print(" ".join(missing(sys.argv[1:])))
