"""The embedded default task: short synthetic reviews, generated offline from a seed.

Each review opens neutrally ("I watched The Silent River last weekend.") and continues positive,
negative or mixed/neutral, so the same prompt (the opening) admits continuations of any sentiment.
That mirrors TRL's GPT-2 IMDb sentiment example and the DPO paper's controlled-sentiment task:
the policy is rewarded for steering a neutral opening towards positive sentiment.

Names are composed from parts and openings from a template plus a time phrase, so the task has
tens of thousands of distinct prompts (a held-out prompt is one the policy has never seen) from a
few hundred words (the tiny model's 2048-token BPE still covers them). Every word in a name or an
opening is neutral to VADER, the gold reward, so no prompt comes with a sentiment of its own.
"""

from __future__ import annotations

import random
import re

WHEN = ["last weekend", "on Friday", "yesterday", "last month", "this week", "a few days ago",
        "in the evening", "on Sunday"]

SUBJECTS = {
    "movie": {
        "name": ("The {} {}", ["Silent", "Midnight", "Paper", "Long", "Glass", "Iron", "Quiet", "Northern",
                               "Blue", "Last", "Hidden", "Distant", "Second", "Silver", "Winter", "Western"],
                 ["River", "Harbor", "Kings", "Orbit", "Summer", "Meadow", "Hour", "Lights", "Canyon",
                  "Letter", "Road", "Station", "Tower", "Island", "Signal", "Frontier"]),
        "openings": ["I watched {name} {when}.", "We saw {name} at the cinema {when}.",
                     "I finally got around to {name} {when}.", "My cousins took me to see {name} {when}.",
                     "I streamed {name} {when}.", "We rented {name} {when}.",
                     "My brother and I watched {name} {when}."],
        "aspects": ["the acting", "the story", "the soundtrack", "the ending", "the pacing", "the dialogue",
                    "the camera work", "the lead actor", "the plot", "the script", "the music", "the villain"],
        "noun": "movie",
    },
    "restaurant": {
        "name": ("{} {}", ["Luna", "Harbor", "Sakura", "Olive", "Red", "Maple", "Blue", "Stone", "Corner",
                           "Garden", "River", "Market", "Copper", "Cedar", "Lantern", "Village"],
                 ["Bistro", "Grill", "House", "Kitchen", "Diner", "Oven", "Cafe", "Table", "Tavern", "Spoon",
                  "Noodle Bar", "Bakery"]),
        "openings": ["We had dinner at {name} {when}.", "I tried {name} for lunch {when}.",
                     "My family went to {name} {when}.", "I ordered takeout from {name} {when}.",
                     "We booked a table at {name} {when}.", "I met my cousin at {name} {when}."],
        "aspects": ["the food", "the service", "the pasta", "the dessert", "the staff", "the atmosphere",
                    "the prices", "the soup", "the portions", "the coffee", "the bread", "the menu"],
        "noun": "restaurant",
    },
    "product": {
        "name": ("the {} {}", ["new", "wireless", "compact", "steel", "electric", "portable", "black", "white",
                               "folding", "small"],
                 ["blender", "backpack", "headphones", "desk lamp", "kettle", "keyboard", "office chair",
                  "coffee maker", "phone case", "speaker", "vacuum", "toaster", "mouse", "printer"]),
        "openings": ["I bought {name} {when}.", "I started using {name} {when}.",
                     "My sister gave me {name} {when}.", "I ordered {name} online {when}.",
                     "I picked up {name} at the store {when}.", "{name} arrived {when}."],
        "aspects": ["the build quality", "the battery", "the design", "the price", "the packaging",
                    "the sound", "the comfort", "the instructions", "the material", "the size", "the color"],
        "noun": "product",
    },
    "hotel": {
        "name": ("the {} {}", ["Seaside", "Mountain", "Park View", "River", "City", "Old Mill", "Sunset",
                               "Harbor", "Lake", "Station", "Garden", "Central"],
                 ["Inn", "Hotel", "Lodge", "Suites", "House", "Resort"]),
        "openings": ["We stayed at {name} {when}.", "I spent a night at {name} {when}.",
                     "Our team booked {name} for a conference {when}.", "I checked into {name} {when}.",
                     "My parents stayed at {name} {when}."],
        "aspects": ["the room", "the breakfast", "the pool", "the front desk", "the bed", "the view",
                    "the location", "the bathroom", "the wifi", "the lobby", "the parking"],
        "noun": "hotel",
    },
    "book": {
        "name": ("The {} {}", ["Winter", "Hidden", "Red", "Salt", "Ocean", "Paper", "Stone", "Northern",
                               "Silver", "Last", "Long", "Quiet"],
                 ["Garden", "Door", "Notebook", "Map", "Clockmaker", "Letters", "Hours", "Island", "Road",
                  "Harbor", "Station", "Kingdom"]),
        "openings": ["I finished reading {name} {when}.", "I read {name} on the train {when}.",
                     "Our book club picked {name} {when}.", "I borrowed {name} from the library {when}.",
                     "I started {name} {when}."],
        "aspects": ["the characters", "the writing", "the ending", "the first chapter", "the plot",
                    "the world building", "the dialogue", "the pacing", "the main character", "the cover"],
        "noun": "book",
    },
    "album": {
        "name": ("{} {}", ["Northern", "Blue", "Glass", "Paper", "Midnight", "Silver", "Copper", "Western",
                           "Distant", "Second"],
                 ["Radio", "Lights", "Signal", "Station", "Orbit", "Summer", "Tapes", "Rooms", "Roads", "Waves"]),
        "openings": ["I listened to {name} {when}.", "My cousin sent me {name} {when}.",
                     "I put {name} on in the car {when}.", "I bought {name} on vinyl {when}.",
                     "We put on {name} at home {when}."],
        "aspects": ["the vocals", "the lyrics", "the production", "the first track", "the guitar",
                    "the drums", "the melodies", "the mixing", "the last song"],
        "noun": "album",
    },
}

POSITIVE = {
    "adjectives": ["wonderful", "excellent", "great", "amazing", "delightful", "fantastic", "lovely",
                   "brilliant", "superb", "charming", "beautiful", "impressive"],
    "sentences": ["Honestly, {aspect} was {adj}.", "{Aspect} was {adj} and I loved it.",
                  "I really enjoyed {aspect}, it was {adj}.", "{Aspect} felt {adj} from start to finish.",
                  "Everyone agreed that {aspect} was {adj}.", "To be fair, {aspect} was {adj}."],
    "closings": ["I would happily recommend this {noun}.", "Highly recommended!",
                 "I can't wait to go back.", "Best {noun} I have had in years.",
                 "It made me really happy.", "Five stars from me."],
}
NEGATIVE = {
    "adjectives": ["terrible", "awful", "boring", "disappointing", "horrible", "bad", "dull",
                   "poor", "mediocre", "annoying", "sloppy", "painful"],
    "sentences": ["Honestly, {aspect} was {adj}.", "{Aspect} was {adj} and I hated it.",
                  "I really disliked {aspect}, it was {adj}.", "{Aspect} felt {adj} from start to finish.",
                  "Everyone agreed that {aspect} was {adj}.", "To be fair, {aspect} was {adj}."],
    "closings": ["I would not recommend this {noun}.", "Avoid it.", "I want my money back.",
                 "Worst {noun} I have had in years.", "It made me really sad.", "One star from me."],
}
NEUTRAL = {
    "adjectives": ["okay", "average", "fine", "ordinary", "acceptable", "standard", "typical"],
    "sentences": ["{Aspect} was {adj}.", "{Aspect} was {adj}, nothing special.",
                  "I thought {aspect} was {adj}.", "{Aspect} seemed {adj} to me."],
    "closings": ["It was an ordinary {noun}.", "Maybe I will try it again someday.",
                 "Nothing more to say.", "It was what I expected."],
}
STYLES = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}
LABELS = ("positive", "negative", "neutral")


def _capitalize(text: str) -> str:
    return text[0].upper() + text[1:]


def _sentence(rng: random.Random, style: dict, aspect: str) -> str:
    template = rng.choice(style["sentences"])
    adj = rng.choice(style["adjectives"])
    return template.format(aspect=aspect, Aspect=_capitalize(aspect), adj=adj)


def make_opening(rng: random.Random, kind: str) -> str:
    """A neutral opening (the prompt): template x composed name x time phrase."""
    subject = SUBJECTS[kind]
    name_format, *parts = subject["name"]
    name = name_format.format(*(rng.choice(part) for part in parts))
    return _capitalize(rng.choice(subject["openings"]).format(name=name, when=rng.choice(WHEN)))


def num_distinct_prompts() -> int:
    """How many distinct openings the generator can produce (an upper bound: a few may coincide)."""
    total = 0
    for subject in SUBJECTS.values():
        names = 1
        for part in subject["name"][1:]:
            names *= len(part)
        total += names * len(subject["openings"]) * len(WHEN)
    return total


def make_review(rng: random.Random, label: str | None = None) -> dict[str, str]:
    """One review: a neutral opening (the prompt) and a body in the chosen sentiment."""
    label = label or rng.choice(LABELS)
    kind = rng.choice(sorted(SUBJECTS))
    subject = SUBJECTS[kind]
    opening = make_opening(rng, kind)
    style = STYLES[label]
    aspects = rng.sample(subject["aspects"], k=rng.randint(1, 2))
    body = [_sentence(rng, style, aspect) for aspect in aspects]
    body.append(rng.choice(style["closings"]).format(noun=subject["noun"]))
    return {"prompt": opening, "text": " ".join([opening, *body]), "label": label, "subject": kind}


def generate_reviews(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [make_review(rng, LABELS[i % len(LABELS)]) for i in range(n)]


# A well-formed response: one or more capitalised sentences, each ending in . ! or ?, after the
# prompt (so it starts with a space), of at least 4 words - the shape of every review body above.
# A policy that games the gold lexicon with broken text fails it (issue 12, "hacking made visible").
_SENTENCES = re.compile(r"^( [A-Z][^.!?]*[.!?])+$")
MIN_WORDS = 4


def is_well_formed(response: str) -> bool:
    """Whether a sampled response (the text after the prompt) reads like a review body."""
    return bool(_SENTENCES.match(response)) and len(response.split()) >= MIN_WORDS


def well_formed_rate(responses: list[str]) -> float:
    """Fraction of ``responses`` that are well-formed (0 for none)."""
    return sum(map(is_well_formed, responses)) / len(responses) if responses else 0.0
