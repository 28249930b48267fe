"""Static vocabularies the synthetic generator draws from.

Everything here is plain data; order matters (the generator indexes into these tuples), so
append rather than reorder if you extend them, or seeded output changes.
"""

from __future__ import annotations

# (city, country code, UTC offset in minutes, region). Offsets are the ones in force in
# November (standard time), so event times look right for the default start date.
CITIES: tuple[tuple[str, str, int, str], ...] = (
    ("London", "GB", 0, "UK & Ireland"),
    ("Paris", "FR", 60, "Western Europe"),
    ("New York", "US", -300, "North America"),
    ("Berlin", "DE", 60, "Central Europe"),
    ("Athens", "GR", 120, "Southern Europe"),
    ("Toronto", "CA", -300, "North America"),
    ("Manchester", "GB", 0, "UK & Ireland"),
    ("Madrid", "ES", 60, "Southern Europe"),
    ("Boston", "US", -300, "North America"),
    ("Helsinki", "FI", 120, "Northern Europe"),
    ("Dublin", "IE", 0, "UK & Ireland"),
    ("Lyon", "FR", 60, "Western Europe"),
    ("Halifax", "CA", -240, "North America"),
    ("Munich", "DE", 60, "Central Europe"),
    ("Amsterdam", "NL", 60, "Western Europe"),
    ("Lisbon", "PT", 0, "Southern Europe"),
)

STORE_DISTRICTS = (
    "Central",
    "Riverside",
    "Old Town",
    "Station",
    "Harbour",
    "Northgate",
    "Southside",
    "Market Square",
    "Park Lane",
    "West End",
    "East Quay",
    "Airport",
    "University",
    "Hillside",
    "Docklands",
    "Castle Hill",
)
STORE_BRAND = "Marketa"

FIRST_NAMES = (
    "Anna",
    "James",
    "Sofia",
    "Liam",
    "Emma",
    "Noah",
    "Olivia",
    "Lucas",
    "Mia",
    "Ethan",
    "Chloé",
    "José",
    "Zoë",
    "Søren",
    "Amélie",
    "Mateo",
    "Hannah",
    "Jonas",
    "Elena",
    "David",
    "Sarah",
    "Mohammed",
    "Aisha",
    "Pierre",
    "Giulia",
    "Lars",
    "Ingrid",
    "Omar",
    "Leila",
    "Tomás",
    "Grace",
    "Oliver",
    "Isla",
    "Finn",
    "Nora",
    "Hugo",
    "Clara",
    "Felix",
    "Maya",
    "Aidan",
)
LAST_NAMES = (
    "Smith",
    "Jones",
    "Brown",
    "Taylor",
    "Wilson",
    "Müller",
    "Schmidt",
    "Dubois",
    "Martin",
    "García",
    "Fernández",
    "Rossi",
    "Bianchi",
    "Jansen",
    "de Vries",
    "O'Brien",
    "Murphy",
    "Kelly",
    "Nielsen",
    "Hansen",
    "Virtanen",
    "Papadopoulos",
    "Silva",
    "Santos",
    "Kowalski",
    "Novak",
    "Andersson",
    "Johansson",
    "Lefèvre",
    "Moreau",
    "Walsh",
    "Evans",
    "Khan",
    "Patel",
    "Nguyen",
    "Cohen",
    "Weber",
    "Becker",
    "Costa",
    "Byrne",
)
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")

CATEGORIES: tuple[tuple[str, tuple[str, ...], int, int], ...] = (
    # (category, nouns, min price cents, max price cents)
    ("Bakery", ("Sourdough Loaf", "Croissants", "Bagels", "Rye Bread", "Muffins", "Baguette"), 99, 699),
    ("Dairy", ("Whole Milk", "Greek Yoghurt", "Cheddar", "Butter", "Brie", "Oat Drink"), 89, 899),
    ("Produce", ("Apples", "Bananas", "Cherry Tomatoes", "Avocados", "Spinach", "Blueberries"), 79, 599),
    ("Beverages", ("Sparkling Water", "Orange Juice", "Cold Brew Coffee", "Green Tea", "Cola", "Kombucha"), 99, 1299),
    ("Snacks", ("Sea Salt Crisps", "Dark Chocolate", "Trail Mix", "Oat Bars", "Pretzels", "Popcorn"), 99, 799),
    ("Pantry", ("Rolled Oats", "Basmati Rice", "Olive Oil", "Penne Pasta", "Tomato Passata", "Honey"), 129, 1599),
    ("Frozen", ("Garden Peas", "Margherita Pizza", "Vanilla Ice Cream", "Fish Fingers", "Berry Mix"), 149, 999),
    ("Household", ("Laundry Liquid", "Dish Soap", "Paper Towels", "Bin Bags", "Sponges"), 149, 1999),
    ("Personal Care", ("Shampoo", "Toothpaste", "Shower Gel", "Hand Cream", "Deodorant"), 199, 1499),
    ("Electronics", ("USB-C Cable", "AA Batteries", "Earbuds", "Power Bank", "LED Bulb"), 399, 7999),
)
BRANDS = (
    "Northfield",
    "Acme",
    "Bellavista",
    "Greenway",
    "Fjord",
    "Sunvale",
    "Maison Claire",
    "Oakridge",
    "Blue Harbour",
    "Kiwa",
    "Alpen",
    "Urban Pantry",
    "Nordlys",
    "Casa Verde",
    "Brightside",
)
PRODUCT_VARIANTS = ("Organic", "Classic", "Family Pack", "Light", "Extra", "Value", "Premium", "Original")
PRODUCT_SIZES = ("250g", "500g", "1kg", "330ml", "1L", "6 pack", "12 pack", "2 x 400g")

# Optional codes on the unannounced `promo_code` CSV column (defect mode).
PROMO_CODES = ("", "", "", "BF2026", "WELCOME10", "LOYAL5")
CHANNEL_HINTS = ("self_checkout", "staffed_till", "click_and_collect")
