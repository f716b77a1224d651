//! The tables the generators draw names, companies, titles, categories and tags from.

/// Client companies and their mail domains; some names carry `&`, accents or CJK.
pub(super) const DEPARTMENTS: &[(&str, &str)] = &[
    ("Acme Dental", "acmedental.example"),
    ("Brightwater Logistics", "brightwater.example"),
    ("Cedar & Pine Law LLP", "cedarpine.example"),
    ("Délices de Montréal Bakery", "delices.example"),
    ("Northwind Traders", "northwind.example"),
    ("Østfold Marine AS", "ostfold.example"),
    ("東京 Trading KK", "tokyo-trading.example"),
    ("Greenleaf Veterinary", "greenleaf.example"),
    ("Harbor View Dental Group", "harborview.example"),
    ("Summit Outdoor Co.", "summit.example"),
    ("Kestrel Engineering", "kestrel.example"),
    ("Lakeside Montessori", "lakeside.example"),
];

/// (first name, last name, mailbox at `msp.example`, job title) of every agent.
pub(super) const AGENTS: &[(&str, &str, &str, &str)] = &[
    ("Sam", "Ortiz", "sam", "Service Desk Technician"),
    ("Priya", "Natarajan", "priya.n", "Service Desk Lead"),
    ("Jonas", "Weiß", "jonas", "Field Technician"),
    ("Mei", "Lin", "mei", "Network Engineer"),
    ("Tomás", "Ribeiro", "tomas", "Service Desk Technician"),
    ("Aisha", "Okafor", "aisha", "Account Manager"),
];

/// (display, ascii for the email address)
pub(super) const FIRST_NAMES: &[(&str, &str)] = &[
    ("Dana", "dana"),
    ("Zoë", "zoe"),
    ("Søren", "soren"),
    ("José", "jose"),
    ("Priya", "priya"),
    ("Liam", "liam"),
    ("Chloé", "chloe"),
    ("Wei", "wei"),
    ("Fatima", "fatima"),
    ("Noah", "noah"),
    ("Olivia", "olivia"),
    ("Mateo", "mateo"),
    ("Hana", "hana"),
    ("Kwame", "kwame"),
    ("Ingrid", "ingrid"),
    ("Ravi", "ravi"),
    ("Emma", "emma"),
    ("Lucas", "lucas"),
    ("Yuki", "yuki"),
    ("Aoife", "aoife"),
];

/// (display, ascii for the email address)
pub(super) const LAST_NAMES: &[(&str, &str)] = &[
    ("Reyes", "reyes"),
    ("Müller", "mueller"),
    ("Nørgaard", "noergaard"),
    ("Núñez", "nunez"),
    ("O'Brien", "obrien"),
    ("Smith", "smith"),
    ("Dubois", "dubois"),
    ("李", "li"),
    ("佐藤", "sato"),
    ("Kowalski", "kowalski"),
    ("Mensah", "mensah"),
    ("García", "garcia"),
    ("Johansson", "johansson"),
    ("Patel", "patel"),
    ("Nguyen", "nguyen"),
];

/// Requesters' job titles.
pub(super) const JOB_TITLES: &[&str] = &[
    "Office Manager",
    "Receptionist",
    "Accountant",
    "Partner",
    "Dental Hygienist",
    "Warehouse Lead",
];

/// (category, sub-category) pairs.
pub(super) const CATEGORIES: &[(&str, &str)] = &[
    ("Software", "Email"),
    ("Hardware", "Printer"),
    ("Network", "VPN"),
    ("Access", "Password reset"),
    ("Hardware", "Laptop"),
    ("Software", "Accounting"),
];

/// Ticket tags.
pub(super) const TAGS: &[&str] = &[
    "vip",
    "onsite",
    "recurring",
    "hardware",
    "m365",
    "after-hours",
];

/// Agent groups: `GROUP_BASE + 1 ..= GROUP_BASE + NUM_GROUPS`.
pub(super) const NUM_GROUPS: i64 = 3;

/// (name, description) of every group, in id order.
pub(super) const GROUP_NAMES: [(&str, &str); NUM_GROUPS as usize] = [
    ("Service Desk", "First-line support"),
    ("Network & Infrastructure", "Firewalls, VPN, servers"),
    ("Field Services", "Onsite visits and hardware"),
];
