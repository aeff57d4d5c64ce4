"""Articles written for the source tests: fictional towns, people and events, so an answer can only come from them."""

from __future__ import annotations

FERRY = (
    "Bluewater Lines restores Kestrel Island ferry after storm",
    [
        "The ferry link between Port Alder and Kestrel Island reopened on Monday, nine days after a winter storm tore "
        "the loading ramp from the island pier.",
        "Bluewater Lines, which has run the crossing since 1998, said the first sailing left Port Alder at 7:15 in the "
        "morning with 212 passengers and a delivery of medical supplies for the island clinic.",
        "The crossing was captained by Marta Oyelaran, who has commanded the ferry Gannet for eleven years. She said the "
        "repaired ramp had been tested twice on Sunday evening before the harbour master signed it off.",
        "Island residents had relied on a fishing cooperative's boats for groceries and mail while the link was closed. "
        "The council has asked Bluewater Lines to add two evening sailings until the end of the month.",
    ],
)

LIBRARY = (
    "Port Alder council approves new library on Mill Street",
    [
        "Port Alder's town council voted seven to two on Thursday to build a new public library on the site of the "
        "old grain store on Mill Street.",
        "The library will be named after the poet Edwin Haskell, who was born in the town in 1911 and wrote most of his "
        "work in a rented room above the grain store. It is expected to cost 4.2 million pounds.",
        "Councillor Rosa Finch, who proposed the plan, said the building would include a children's reading room, a "
        "local history archive and twelve public computers. Construction is due to start in the spring.",
        "The two councillors who voted against said the town should first repair the roof of the existing library on "
        "Quay Road, which has been closed to visitors since October.",
    ],
)

FESTIVAL = (
    "River festival draws record crowd to Port Alder",
    [
        "An estimated 38,000 people visited the Port Alder river festival over the weekend, the largest crowd since the "
        "event began in 1976, organisers said on Sunday.",
        "The dragon boat race was won for the third year running by a team from the Kestrel Island rowing club, who "
        "finished the 500-metre course in two minutes and four seconds.",
        "Traders along the quay reported their busiest weekend of the year. The festival committee said it would add a "
        "second footbridge next year to ease crowding at the market.",
    ],
)

FROST = (
    "Valley orchard growers count losses after early frost",
    [
        "Apple growers in the Linden Valley lost about a third of their late harvest after temperatures fell to minus "
        "six degrees on the night of October 28, the growers' association said.",
        "The association's chair, Tomas Verhoeven, said the Ellery Red variety was hit hardest because its fruit was "
        "still on the trees. Growers who had picked early varieties were largely spared.",
        "The regional government has promised emergency grants of up to 20,000 euros per farm. Applications open on "
        "November 10 and close at the end of the year.",
    ],
)


def html_paragraphs(paragraphs: list[str]) -> str:
    return "".join(f"<p>{p}</p>" for p in paragraphs)
