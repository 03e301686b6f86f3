"""The embedded default task: short synthetic reviews, generated offline from a seed.

Each review opens neutrally ("I watched The Silent River last weekend.") and continues positive,
negative or mixed/neutral, so the same prompt (the opening) admits continuations of any sentiment.
That mirrors TRL's GPT-2 IMDb sentiment example and the DPO paper's controlled-sentiment task:
the policy is rewarded for steering a neutral opening towards positive sentiment.
"""

from __future__ import annotations

import random

SUBJECTS = {
    "movie": {
        "names": ["The Silent River", "Midnight Harbor", "Paper Kings", "The Long Orbit", "Glass Summer",
                  "Iron Meadow", "The Quiet Hour", "Northern Lights", "Blue Canyon", "The Last Letter"],
        "openings": ["I watched {name} last weekend.", "We saw {name} at the cinema.",
                     "I finally got around to {name}.", "My friends took me to see {name}.",
                     "Last night I streamed {name}."],
        "aspects": ["the acting", "the story", "the soundtrack", "the ending", "the pacing",
                    "the dialogue", "the camera work", "the lead actor", "the plot", "the script"],
        "noun": "movie",
    },
    "restaurant": {
        "names": ["Casa Verde", "The Golden Spoon", "Luna Bistro", "Harbor Grill", "Sakura House",
                  "The Olive Tree", "Red Lantern", "Maple Diner", "Blue Fig", "Stone Oven"],
        "openings": ["We had dinner at {name} on Friday.", "I tried {name} for lunch.",
                     "My family went to {name} last week.", "I ordered takeout from {name}.",
                     "We booked a table at {name}."],
        "aspects": ["the food", "the service", "the pasta", "the dessert", "the staff",
                    "the atmosphere", "the prices", "the soup", "the portions", "the coffee"],
        "noun": "restaurant",
    },
    "product": {
        "names": ["the new blender", "this backpack", "the wireless headphones", "this desk lamp",
                  "the running shoes", "this coffee maker", "the phone case", "this keyboard",
                  "the electric kettle", "this office chair"],
        "openings": ["I bought {name} a month ago.", "I have been using {name} for two weeks.",
                     "My sister gave me {name}.", "I ordered {name} online.",
                     "I picked up {name} at the store."],
        "aspects": ["the build quality", "the battery", "the design", "the price", "the packaging",
                    "the sound", "the comfort", "the instructions", "the material", "the size"],
        "noun": "product",
    },
    "hotel": {
        "names": ["the Seaside Inn", "Grand Plaza", "the Mountain Lodge", "Park View Hotel",
                  "the River House", "City Suites", "the Old Mill Hotel", "Sunset Resort"],
        "openings": ["We stayed at {name} for three nights.", "I spent a weekend at {name}.",
                     "Our team booked {name} for a conference.", "I checked into {name} late at night."],
        "aspects": ["the room", "the breakfast", "the pool", "the front desk", "the bed",
                    "the view", "the location", "the bathroom", "the wifi", "the lobby"],
        "noun": "hotel",
    },
    "book": {
        "names": ["The Winter Garden", "A Map of Stars", "The Clockmaker", "Salt and Stone",
                  "The Hidden Door", "Letters from Home", "The Red Notebook", "Ocean Hours"],
        "openings": ["I just finished reading {name}.", "I read {name} on my vacation.",
                     "Our book club picked {name}.", "I borrowed {name} from the library."],
        "aspects": ["the characters", "the writing", "the ending", "the first chapter", "the plot",
                    "the world building", "the dialogue", "the pacing", "the main character"],
        "noun": "book",
    },
}

POSITIVE = {
    "adjectives": ["wonderful", "excellent", "great", "amazing", "delightful", "fantastic", "lovely",
                   "brilliant", "superb", "charming", "beautiful", "impressive"],
    "sentences": ["Honestly, {aspect} was {adj}.", "{Aspect} was {adj} and I loved it.",
                  "I really enjoyed {aspect}, it was {adj}.", "{Aspect} felt {adj} from start to finish.",
                  "Everyone agreed that {aspect} was {adj}."],
    "closings": ["I would happily recommend this {noun}.", "Highly recommended!",
                 "I can't wait to go back.", "Best {noun} I have had in years.",
                 "It made me really happy.", "Five stars from me."],
}
NEGATIVE = {
    "adjectives": ["terrible", "awful", "boring", "disappointing", "horrible", "bad", "dull",
                   "poor", "mediocre", "annoying", "sloppy", "painful"],
    "sentences": ["Honestly, {aspect} was {adj}.", "{Aspect} was {adj} and I hated it.",
                  "I really disliked {aspect}, it was {adj}.", "{Aspect} felt {adj} from start to finish.",
                  "Everyone agreed that {aspect} was {adj}."],
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


def _sentence(rng: random.Random, style: dict, aspect: str) -> str:
    template = rng.choice(style["sentences"])
    adj = rng.choice(style["adjectives"])
    return template.format(aspect=aspect, Aspect=aspect[0].upper() + aspect[1:], adj=adj)


def make_review(rng: random.Random, label: str | None = None) -> dict[str, str]:
    """One review: a neutral opening (the prompt) and a body in the chosen sentiment."""
    label = label or rng.choice(LABELS)
    kind = rng.choice(sorted(SUBJECTS))
    subject = SUBJECTS[kind]
    name = rng.choice(subject["names"])
    opening = rng.choice(subject["openings"]).format(name=name)
    opening = opening[0].upper() + opening[1:]
    style = STYLES[label]
    aspects = rng.sample(subject["aspects"], k=rng.randint(1, 2))
    body = [_sentence(rng, style, aspect) for aspect in aspects]
    body.append(rng.choice(style["closings"]).format(noun=subject["noun"]))
    return {"prompt": opening, "text": " ".join([opening, *body]), "label": label, "subject": kind}


def generate_reviews(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [make_review(rng, LABELS[i % len(LABELS)]) for i in range(n)]
