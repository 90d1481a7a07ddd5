"""Container names: Docker's validity rule, generated names, and lookup by name or id prefix.

Owns the name index apid keeps in memory (name -> id, rebuilt from managerd at
start-up) and the rules from moby `daemon/names.go` and
`pkg/namesgenerator`. Must not persist anything itself: names are stored with
the container's Docker-level record.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from dockyard.errdefs import AlreadyExists, InvalidArgument, NotFound

__all__ = ["validate_name", "generate_name", "NameIndex", "AmbiguousPrefix"]

_VALID = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

_ADJECTIVES = (
    "admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold "
    "boring brave busy charming clever compassionate competent condescending confident cool "
    "cranky crazy dazzling determined distracted dreamy eager ecstatic elastic elated elegant "
    "eloquent epic exciting fervent festive flamboyant focused friendly frosty funny gallant "
    "gifted goofy gracious great happy hardcore heuristic hopeful hungry infallible inspiring "
    "intelligent interesting jolly jovial keen kind laughing loving lucid magical modest "
    "musing mystifying naughty nervous nice nifty nostalgic objective optimistic peaceful "
    "pedantic pensive practical priceless quirky quizzical recursing relaxed reverent romantic "
    "sad serene sharp silly sleepy stoic strange stupefied suspicious sweet tender thirsty "
    "trusting unruffled upbeat vibrant vigilant vigorous wizardly wonderful xenodochial "
    "youthful zealous zen"
).split()
_SURNAMES = (
    "agnesi albattani allen almeida antonelli archimedes ardinghelli aryabhata austin babbage "
    "banach banzai bardeen bartik bassi beaver bell benz bhabha bhaskara black blackburn "
    "blackwell bohr booth borg bose bouman boyd brahmagupta brattain brown buck burnell cannon "
    "carson cartwright carver cerf chandrasekhar chaplygin chatelet chatterjee chaum chebyshev "
    "clarke cohen colden cori cray curie curran darwin davinci dewdney dhawan diffie dijkstra "
    "dirac driscoll dubinsky easley edison einstein elbakyan elgamal elion ellis engelbart "
    "euclid euler faraday feistel fermat fermi feynman franklin gagarin galileo galois "
    "ganguly gates gauss germain goldberg goldstine goldwasser golick goodall gould greider "
    "grothendieck haibt hamilton haslett hawking heisenberg hellman hermann herschel hertz "
    "heyrovsky hodgkin hofstadter hoover hopper hugle hypatia ishizaka jackson jang jemison "
    "jennings jepsen johnson joliot jones kalam kapitsa kare keldysh keller kepler khayyam "
    "khorana kilby kirch knuth kowalevski lalande lamarr lamport leakey leavitt lederberg "
    "lehmann lewin lichterman liskov lovelace lumiere mahavira margulis matsumoto maxwell "
    "mayer mccarthy mcclintock mclaren mclean mcnulty meitner mendel mendeleev meninsky merkle "
    "mestorf mirzakhani montalcini moore morse moser murdock napier nash neumann newton "
    "nightingale nobel noether northcutt noyce panini pare pascal pasteur payne perlman pike "
    "poincare poitras proskuriakova ptolemy raman ramanujan rhodes ride ritchie robinson "
    "roentgen rosalind rubin saha sammet sanderson satoshi shamir shannon shaw shirley "
    "shockley shtern sinoussi snyder solomon spence stonebraker sutherland swanson swartz "
    "swirles taussig tesla tharp thompson torvalds tu turing varahamihira vaughan visvesvaraya "
    "volhard villani wescoff wilbur wiles williams williamson wilson wing wozniak wright wu "
    "yalow yonath zhukovsky"
).split()


def validate_name(name: str) -> str:
    """Return the name with its leading `/`; 400 in Docker's words when invalid."""
    if not _VALID.match(name):
        raise InvalidArgument(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                              "are allowed")
    return name if name.startswith("/") else "/" + name


def generate_name(taken: Iterable[str] | None = None, rng: random.Random | None = None) -> str:
    """`adjective_surname` (never boring_wozniak); a digit suffix on retries (names-generator.go)."""
    rng = rng or random.Random()
    used = set(taken or ())
    for attempt in range(6):
        while True:
            name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_SURNAMES)}"
            if name != "boring_wozniak":
                break
        if attempt:
            name += str(rng.randrange(10))
        if "/" + name not in used and name not in used:
            return name
    return ""


class AmbiguousPrefix(InvalidArgument):
    """Several ids share the prefix (Docker answers 404-class 'multiple IDs found')."""


class NameIndex:
    """name <-> id map and id-prefix lookup, the in-memory index behind every `{id}` route."""

    def __init__(self) -> None:
        self._by_name: dict[str, str] = {}
        self._ids: set[str] = set()

    def __contains__(self, container_id: str) -> bool:
        return container_id in self._ids

    def ids(self) -> list[str]:
        return list(self._ids)

    def names(self) -> set[str]:
        return set(self._by_name)

    def reserve(self, name: str, container_id: str) -> None:
        """Claim `/name` for the id (409 in Docker's words if another container has it)."""
        owner = self._by_name.get(name)
        if owner and owner != container_id:
            raise AlreadyExists(
                f'Conflict. The container name "{name}" is already in use by container '
                f'"{owner}". You have to remove (or rename) that container to be able to reuse '
                "that name.")
        self._by_name[name] = container_id
        self._ids.add(container_id)

    def release(self, container_id: str) -> None:
        self._ids.discard(container_id)
        for name in [n for n, i in self._by_name.items() if i == container_id]:
            del self._by_name[name]

    def rename(self, container_id: str, old: str, new: str) -> None:
        self.reserve(new, container_id)
        if old != new:
            self._by_name.pop(old, None)

    def resolve(self, ref: str, kind: str = "container") -> str:
        """Full id, `/name`, `name` or a unique id prefix -> full id.

        Raises:
            NotFound: "No such container: <ref>".
            AmbiguousPrefix: several ids start with ref.
        """
        if ref in self._ids:
            return ref
        name = ref if ref.startswith("/") else "/" + ref
        if name in self._by_name:
            return self._by_name[name]
        if ref and re.fullmatch(r"[0-9a-f]+", ref):
            hits = [i for i in self._ids if i.startswith(ref)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise AmbiguousPrefix(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such {kind}: {ref}")
