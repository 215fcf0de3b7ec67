"""Helpers for 07-cluster.ipynb: a module beside the notebook, installed nowhere.

nbtasks sends the functions and classes of a module like this one to the engines with the
tasks that use them, so engines on other hosts run them without a copy of this file.
"""

import dataclasses
import re

import nbtasks as nt

WORD = re.compile(r"[a-z']+")


def words(line):
    """The words of a line, in lower case, without the stop words shared with the cluster."""
    stop = nt.shared("stopwords")
    return [w for w in WORD.findall(line.lower()) if w not in stop]


def pairs(words):
    """The mapper: (word, 1) for every word of a line."""
    for word in words:
        yield word, 1


def count(word, ones):
    """The reducer: how often the word came up."""
    return sum(ones)


@dataclasses.dataclass(frozen=True)
class Report:
    """The most frequent words, and how many different words there were."""

    top: tuple
    distinct: int

    def __str__(self):
        common = ", ".join(f"{word} ({n})" for word, n in self.top)
        return f"{self.distinct} different words; the most frequent: {common}"


def report(counts, top=5):
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return Report(tuple(ranked[:top]), len(counts))
