//! Small vocabularies for synthetic people. Kana are half-width, as NameKana is written in the
//! Onshi result files.

pub const FAMILY: &[(&str, &str)] = &[
    ("佐藤", "ｻﾄｳ"),
    ("鈴木", "ｽｽﾞｷ"),
    ("高橋", "ﾀｶﾊｼ"),
    ("田中", "ﾀﾅｶ"),
    ("伊藤", "ｲﾄｳ"),
    ("渡辺", "ﾜﾀﾅﾍﾞ"),
    ("山本", "ﾔﾏﾓﾄ"),
    ("中村", "ﾅｶﾑﾗ"),
    ("小林", "ｺﾊﾞﾔｼ"),
    ("加藤", "ｶﾄｳ"),
    ("吉田", "ﾖｼﾀﾞ"),
    ("山田", "ﾔﾏﾀﾞ"),
    ("佐々木", "ｻｻｷ"),
    ("山口", "ﾔﾏｸﾞﾁ"),
    ("松本", "ﾏﾂﾓﾄ"),
];

/// Family names as they are written where the everyday form differs or an extension of CP932
/// holds them, with the form a Shift_JIS (CP932) answer carries by the gateway's written rule
/// (`onshi_gateway::names`): JIS X 0213 characters become their everyday form, a variation
/// selector is dropped, and the NEC/IBM extensions (髙, 﨑) are CP932 already. About one
/// household in [`RARE_EVERY`] carries one, so every run has some.
pub const RARE_FAMILY: &[(&str, &str, &str)] = &[
    ("𠮷田", "吉田", "ﾖｼﾀﾞ"),
    ("𡈽屋", "土屋", "ﾂﾁﾔ"),
    ("葛\u{E0100}城", "葛城", "ｶﾂﾗｷﾞ"),
    ("髙橋", "髙橋", "ﾀｶﾊｼ"),
    ("山﨑", "山﨑", "ﾔﾏｻﾞｷ"),
    ("辻\u{E0101}本", "辻本", "ﾂｼﾞﾓﾄ"),
    ("森鷗", "森鴎", "ﾓﾘｵｳ"),
];

/// One household in this many gets a name of [`RARE_FAMILY`].
pub const RARE_EVERY: u64 = 50;

/// The CP932 form of a family name of [`RARE_FAMILY`], `None` for an ordinary one.
pub fn cp932_form(family: &str) -> Option<&'static str> {
    RARE_FAMILY.iter().find(|(written, _, _)| *written == family).map(|(_, cp932, _)| *cp932)
}

/// The family name of the households whose members are billed as 不詳 in the ground truth (one
/// household in [`UNKNOWN_EVERY`]): a kana reading nobody else in the world has, made unique per
/// person by [`kana_serial`], so that a search by name, birth date and sex names exactly them.
pub const UNKNOWN_FAMILY: (&str, &str) = ("符生", "ﾌｼｮｳ");

/// One household in this many is billed as 不詳 in the ground truth.
pub const UNKNOWN_EVERY: u64 = 97;

/// A person's serial as a kana reading of fixed length (eight digits, each one syllable), so
/// that no two people share one: 1234 → ﾚｲﾚｲﾚｲﾚｲｲﾁﾆｻﾝﾖﾝ.
pub fn kana_serial(serial: u64) -> String {
    const DIGITS: [&str; 10] = ["ﾚｲ", "ｲﾁ", "ﾆ", "ｻﾝ", "ﾖﾝ", "ｺﾞ", "ﾛｸ", "ﾅﾅ", "ﾊﾁ", "ｷｭｳ"];
    format!("{:08}", serial % 100_000_000).bytes().map(|b| DIGITS[usize::from(b - b'0')]).collect()
}

pub const GIVEN_MALE: &[(&str, &str)] = &[
    ("太郎", "ﾀﾛｳ"),
    ("健", "ｹﾝ"),
    ("翔太", "ｼｮｳﾀ"),
    ("大輔", "ﾀﾞｲｽｹ"),
    ("誠", "ﾏｺﾄ"),
    ("蓮", "ﾚﾝ"),
    ("茂", "ｼｹﾞﾙ"),
    ("博", "ﾋﾛｼ"),
    ("悠真", "ﾕｳﾏ"),
    ("清", "ｷﾖｼ"),
];

pub const GIVEN_FEMALE: &[(&str, &str)] = &[
    ("花子", "ﾊﾅｺ"),
    ("美咲", "ﾐｻｷ"),
    ("陽子", "ﾖｳｺ"),
    ("結衣", "ﾕｲ"),
    ("恵", "ﾒｸﾞﾐ"),
    ("陽菜", "ﾋﾅ"),
    ("和子", "ｶｽﾞｺ"),
    ("幸子", "ｻﾁｺ"),
    ("葵", "ｱｵｲ"),
    ("節子", "ｾﾂｺ"),
];

pub const PREFECTURES: [&str; 47] = [
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
];
