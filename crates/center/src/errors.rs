//! The catalogue of stable codes: every error and every notice the center gives, with what
//! reception should do (plain Japanese) and what the vendor or operator should do (English).
//! Codes never change meaning once released; new situations get new codes.

use onshi_api::verify::{ApiError, Notice};
use onshi_domain::{Date, FieldError};

/// An error the API returns, with its HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CenterError {
    pub status: u16,
    /// Boxed: errors travel in every `Result` of the hot path, which should stay small.
    pub body: Box<ApiError>,
}

fn error(status: u16, code: &str, field: Option<&str>, detail: String, reception_ja: &str, operator_en: &str) -> CenterError {
    CenterError {
        status,
        body: Box::new(ApiError {
            code: code.to_string(),
            field: field.map(str::to_string),
            detail,
            reception_ja: reception_ja.to_string(),
            operator_en: operator_en.to_string(),
        }),
    }
}

/// A request field that failed its rules. The code names the field, so that a receipt computer
/// can highlight it.
pub fn invalid_field(field: &str, problem: &FieldError) -> CenterError {
    let (code, reception_ja) = match field {
        "insurer_number" => (
            "INVALID_INSURER_NUMBER",
            "保険者番号が正しくありません。保険証・資格確認書の保険者番号（8桁、国保は6桁）を確かめて入力し直してください。",
        ),
        "symbol" => ("INVALID_SYMBOL", "記号が正しくありません。保険証の記号を確かめて入力し直してください。"),
        "number" => ("INVALID_NUMBER", "番号が正しくありません。保険証の番号を確かめて入力し直してください。"),
        "branch" => ("INVALID_BRANCH", "枝番が正しくありません。保険証の枝番（2桁の数字）を確かめて入力し直してください。"),
        "birth_date" => ("INVALID_BIRTH_DATE", "生年月日が正しくありません。西暦8桁（例: 19800401）で入力し直してください。"),
        "date_of_care" => ("INVALID_DATE_OF_CARE", "診療日が正しくありません。西暦8桁で入力し直してください。"),
        "payer_number" => {
            ("INVALID_PAYER_NUMBER", "公費負担者番号が正しくありません。受給者証の公費負担者番号（8桁）を確かめて入力し直してください。")
        }
        "recipient_number" => {
            ("INVALID_RECIPIENT_NUMBER", "公費受給者番号が正しくありません。受給者証の受給者番号（7桁）を確かめて入力し直してください。")
        }
        "institution_code" => {
            ("INVALID_INSTITUTION_CODE", "医療機関コードの設定が正しくありません。レセコンの設定を業者に確認してください。")
        }
        _ => ("INVALID_FIELD", "入力内容に誤りがあります。入力し直してください。"),
    };
    error(
        400,
        code,
        Some(field),
        format!("{field}: the value {problem}"),
        reception_ja,
        "Correct the field named in `field` as `detail` explains and send the request again; nothing was stored.",
    )
}

/// The institution has made its day's searches by attributes.
pub fn attribute_quota(per_day: u32) -> CenterError {
    error(
        429,
        "ATTRIBUTE_QUOTA_EXCEEDED",
        None,
        format!("this institution has made its {per_day} searches by attributes of today (Japan time)"),
        "本日の属性（氏名・生年月日・性別）による照会の上限に達しました。明日もう一度点検してください。件数が足りない場合は運用者に連絡してください。",
        "Searches by attributes are limited per institution and day; try again tomorrow, or ask the operator if the limit is too low for this institution.",
    )
}

/// The institution's by-numbers 受給者証 questions that found nothing are used up for today.
pub fn subsidy_misses(per_day: u32) -> CenterError {
    error(
        429,
        "SUBSIDY_MISSES_EXCEEDED",
        None,
        format!("this institution has had {per_day} 受給者証 questions answered not_registered today (Japan time)"),
        "本日、登録のない受給者証の照会が上限に達しました。受給者証の番号・生年月日を原本で確かめ、明日もう一度照会してください。",
        "By-numbers 受給者証 questions that find nothing are limited per institution and day (guessing birth dates); try again tomorrow, or ask the operator.",
    )
}

/// A home-care consent the patient cannot give: its last day is not a date, is past, or is
/// more than a year ahead.
pub fn home_care_invalid(detail: String) -> CenterError {
    error(
        400,
        "HOME_CARE_INVALID",
        Some("consent.home"),
        detail,
        "在宅・オンライン診療の同意期間が正しくありません。今日から1年以内の最終日を選び直して、もう一度カードで確認してください。",
        "The home-care consent's last day must be a date from today to a year ahead; nothing was recorded.",
    )
}

/// A 再照会 key this institution was never given (another clinic's, or none): said the same
/// way for both, so that a key proves nothing to anyone else.
pub fn home_consent_unknown() -> CenterError {
    error(
        403,
        "HOME_CONSENT_UNKNOWN",
        Some("key"),
        "no home-care consent with this key was given to this institution".into(),
        "この在宅・オンライン診療の同意は当院には登録されていません。患者さんのマイナ保険証でもう一度確認してください。",
        "The key is not one of this institution's home-care consents; verify with the patient's card again.",
    )
}

/// A 再照会 outside the consent's period.
pub fn home_consent_expired(valid_from: &str, valid_to: &str) -> CenterError {
    error(
        403,
        "HOME_CONSENT_EXPIRED",
        Some("date_of_care"),
        format!("the home-care consent covers {valid_from} to {valid_to}"),
        "在宅・オンライン診療の同意期間外です。患者さんのマイナ保険証でもう一度確認し、同意をいただいてください。",
        "The date of care is outside the consent's period; verify with the patient's card, which records a new consent.",
    )
}

pub fn malformed_body(detail: String) -> CenterError {
    error(
        400,
        "MALFORMED_REQUEST",
        None,
        detail,
        "送信されたデータの形式が正しくありません。レセコン業者に連絡してください。",
        "The body is not the JSON this endpoint expects (see /v1/openapi.json); fix the client. Nothing was stored.",
    )
}

pub fn body_too_large(limit_bytes: usize) -> CenterError {
    error(
        413,
        "BODY_TOO_LARGE",
        None,
        format!("the request body exceeds {limit_bytes} bytes"),
        "一度に送るデータが多すぎます。分けて送ってください。",
        "Split the request; the limit is stated in `detail`. Nothing was stored.",
    )
}

pub fn body_timeout(seconds: u64) -> CenterError {
    error(
        408,
        "BODY_TIMEOUT",
        None,
        format!("the request body did not arrive within {seconds} s"),
        "通信が途中で止まりました。もう一度確認してください。続く場合は回線を確認してください。",
        "Send the whole body at once; a body that trickles in is cut off. Nothing was stored.",
    )
}

/// The caller sent more requests than its share; `retry_after` seconds until it may again.
pub fn rate_limited(retry_after: u64) -> CenterError {
    error(
        429,
        "RATE_LIMITED",
        None,
        format!("too many requests from this certificate; retry after {retry_after} s"),
        "短い時間に確認が集中しています。数秒待ってからもう一度確認してください。続く場合はレセコン業者に連絡してください。",
        "Honour Retry-After; a receipt computer in a loop is the usual cause. Use the batch endpoint for many checks.",
    )
}

pub fn batch_size(entries: usize, max: usize) -> CenterError {
    error(
        400,
        "BATCH_SIZE",
        Some("entries"),
        format!("a batch holds 1 to {max} entries; this one holds {entries}"),
        "一括照会の件数が範囲外です（1〜10,000件）。分けて送ってください。",
        "Send between 1 and the stated maximum entries per call.",
    )
}

pub fn certificate_required() -> CenterError {
    error(
        401,
        "CLIENT_CERTIFICATE_REQUIRED",
        None,
        "this endpoint needs a client certificate issued by the center CA; none was presented".into(),
        "センターに接続するための証明書が設定されていません。`onshi doctor` を実行するか、業者に連絡してください。",
        "Configure the institution (or insurer) certificate and key in the client; see `onshi center pki`.",
    )
}

/// A request on a connection opened before the client's certificate was revoked (a new
/// connection is refused at the TLS handshake with the `certificate_revoked` alert).
pub fn certificate_revoked() -> CenterError {
    error(
        403,
        "CERTIFICATE_REVOKED",
        None,
        "this client certificate was revoked by the center's operator".into(),
        "この医療機関（保険者）の証明書はセンターで失効しています。運用者に新しい証明書の発行を依頼し、届いた証明書と秘密鍵に差し替えてください。",
        "The operator revoked this certificate (`onshi center pki revoke`), e.g. after its key was stolen; install a newly issued certificate and key.",
    )
}

pub fn wrong_role(needed: &str) -> CenterError {
    error(
        403,
        "WRONG_ROLE",
        None,
        format!("this endpoint is for {needed} certificates"),
        "この操作はこの証明書では行えません。業者に連絡してください。",
        "Use a certificate of the role stated in `detail`.",
    )
}

pub fn institution_mismatch(claimed: &str, certified: &str) -> CenterError {
    error(
        403,
        "INSTITUTION_MISMATCH",
        Some("institution_code"),
        format!("the request names institution {claimed} but the client certificate is for {certified}; the certificate decides"),
        "医療機関コードの設定が証明書と一致しません。レセコンの医療機関コード設定を業者に確認してください。",
        "Remove institution_code from the body or make it match the certificate; the center never trusts the body for it.",
    )
}

pub fn foreign_insurer(number: &str, certified: &str) -> String {
    format!("insurer number {number} is not the uploading insurer's ({certified}); an insurer may only write its own members")
}

pub fn register_unavailable(detail: String) -> CenterError {
    error(
        503,
        "REGISTER_UNAVAILABLE",
        None,
        detail,
        "センターで一時的な障害が起きています。保険証・資格確認書を目視で確認して受付を続け、後で再照会してください。",
        "The register could not answer; check the center's log and disk. Retry with backoff.",
    )
}

/// An upload that arrived while the center's register is being loaded for the first time
/// (`onshi center import` into an empty register): nothing of it was applied, and the same
/// file sent again later is applied once (events by their ids). Said to the uploader, not in
/// the operator's terms.
pub fn upload_while_loading(started_at: &str) -> CenterError {
    error(
        503,
        "REGISTER_UNAVAILABLE",
        None,
        format!(
            "the center's register is being loaded (since {started_at}, Japan time): nothing of this upload was applied; \
             send the same file again later"
        ),
        "センターが資格情報を一括で読み込んでいる最中のため、このアップロードは反映されていません。しばらくしてから同じファイルを再送してください（同じ事象は一度だけ反映されます）。",
        "Send the same file again later; events already applied are skipped by their ids. The center's operator finishes the load with `onshi center import`.",
    )
}

/// A store failure behind an upload, said to the uploader.
pub fn upload_failed(error: crate::import::ImportError) -> CenterError {
    match error {
        crate::import::ImportError::Store(onshi_store::StoreError::Loading { started_at }) => upload_while_loading(&started_at),
        other => register_unavailable(other.to_string()),
    }
}

pub fn not_found(path: &str) -> CenterError {
    error(
        404,
        "NOT_FOUND",
        None,
        format!("no endpoint at {path}; see /v1/openapi.json"),
        "接続先の設定が正しくありません。業者に連絡してください。",
        "Check the URL against the OpenAPI document.",
    )
}

fn notice(code: &str, reception_ja: String, operator_en: String) -> Notice {
    Notice { code: code.to_string(), reception_ja, operator_en }
}

/// Validity 4 without any coverage carrying the numbers. Says honestly that late registration
/// is a possible cause, with the insurer's measured lag when known.
pub fn no_such_coverage(lag: Option<(f64, u32)>) -> Notice {
    let lag_ja = match lag {
        Some((_, max)) => format!("この保険者の登録は最大{max}日程度遅れることがあります。"),
        None => "保険者の登録は最大10日程度遅れることがあります。".to_string(),
    };
    notice(
        "NO_SUCH_COVERAGE",
        format!("この番号の資格は登録されていません。保険証・資格確認書の番号を確かめてください。最近加入・転職された方は、保険者の登録待ちの可能性があります。{lag_ja}保険証等を目視で確認して受付し、後日もう一度照会してください。"),
        "No coverage carries these numbers. If the numbers are right, the insurer may not have registered it yet (see insurer_lag); re-verify later.".to_string(),
    )
}

pub fn birth_date_mismatch() -> Notice {
    notice(
        "BIRTH_DATE_MISMATCH",
        "番号は登録されていますが、生年月日が一致しません。生年月日を確かめて入力し直してください。".into(),
        "The numbers exist but not with this birth date; check the birth date entered.".into(),
    )
}

pub fn several_matches(count: usize) -> Notice {
    notice(
        "SEVERAL_MATCHES",
        format!("同じ番号・生年月日の方が{count}人います。保険証の枝番（2桁）を入力して、もう一度照会してください。"),
        "Several people share these numbers and birth date; send the branch number (枝番).".into(),
    )
}

/// A search by attributes that fits more than one person: how many is not said.
pub fn several_with_these_attributes() -> Notice {
    notice(
        "SEVERAL_MATCHES",
        "同じ氏名・生年月日・性別の方が複数登録されていて、特定できません。患者さんに保険証・資格確認書の番号を確かめてください。".into(),
        "More than one person has these attributes; ask the patient for the card's numbers.".into(),
    )
}

pub fn coverage_lost(lost_on: Date) -> Notice {
    notice(
        "COVERAGE_LOST",
        format!(
            "{}に資格を喪失しています。新しい保険証・資格確認書をお持ちか確認してください。お持ちでなければ、加入先の確認をお願いしてください。",
            lost_on.japanese()
        ),
        format!("The coverage ended (lost_on {lost_on}); no newer coverage is registered."),
    )
}

/// Lost on the 75th birthday by law, before the insurer registered it.
pub fn coverage_lost_at_75(lost_on: Date) -> Notice {
    notice(
        "COVERAGE_LOST_AT_75",
        format!(
            "75歳の誕生日（{}）に後期高齢者医療制度へ移ったため、この資格は法律により喪失しています（保険者の届出はまだ登録されていません）。後期高齢者医療の資格確認書・被保険者証の番号で確認してください。",
            lost_on.japanese()
        ),
        format!(
            "Every coverage but 後期高齢者医療 ends on the 75th birthday ({lost_on}) by law; the insurer has not registered the loss yet."
        ),
    )
}

pub fn not_yet_started(acquired_on: Date) -> Notice {
    notice(
        "COVERAGE_NOT_YET_STARTED",
        format!("この資格は{}から有効です。診療日に有効な保険証・資格確認書を確認してください。", acquired_on.japanese()),
        format!("The coverage starts on {acquired_on}, after the date of care."),
    )
}

pub fn newer_coverage(lost_on: Date, newer_insurer: &str) -> Notice {
    notice(
        "NEWER_COVERAGE",
        format!(
            "{}に資格を喪失し、新しい資格（保険者番号 {newer_insurer}）があります。新しい資格の内容で受付・請求してください。",
            lost_on.japanese()
        ),
        "The coverage ended and the person holds a newer one (newer_coverage); bill that insurer (振替).".into(),
    )
}

/// The card path's refusals (マイナ保険証). Each names its cause and what to do at reception.
pub mod card {
    use super::{CenterError, error};

    pub fn path_unavailable() -> CenterError {
        path_unavailable_because("this center has no card CA and revocation list loaded".into())
    }

    /// The card path is off: no card CA, or no revocation list the center can trust (stale,
    /// or older than one already seen).
    pub fn path_unavailable_because(detail: String) -> CenterError {
        error(
            503,
            "CARD_PATH_UNAVAILABLE",
            None,
            detail,
            "マイナンバーカードでの確認は現在利用できません。保険証・資格確認書の番号で確認してください。",
            "Start the center with --jpki DIR holding ca.pem and a current crl.pem (see `onshi jpki crl`).",
        )
    }

    pub fn not_bound() -> CenterError {
        error(
            404,
            "CARD_NOT_BOUND",
            Some("proof.certificate"),
            "the card authority's binding feed has no entry for this certificate".into(),
            "このカードの発行情報がまだ届いていません。資格確認書・保険証で確認し、後日あらためて利用登録してください。",
            "Whose card a certificate is comes from the card CA's signed binding feed (bindings.jsonl); none names this serial yet.",
        )
    }

    pub fn binding_disputed() -> CenterError {
        error(
            409,
            "CARD_BINDING_DISPUTED",
            Some("proof.certificate"),
            "the insurer confirmed that this card was linked to the wrong person; the card authority has not corrected it yet".into(),
            "このカードは誤ったひも付けが確認され、カード発行者の訂正待ちです。資格確認書・保険証で確認してください。",
            "Linking again waits for a corrected binding from the card CA (a newer feed entry for this certificate).",
        )
    }

    pub fn person_not_registered() -> CenterError {
        error(
            404,
            "CARD_PERSON_NOT_REGISTERED",
            Some("proof.certificate"),
            "no insurer has registered the card's holder".into(),
            "この方の資格情報は保険者からまだ登録されていません。資格確認書・保険証で確認してください。",
            "The card CA binds the card to a person no insurer event has named yet.",
        )
    }

    pub fn consent_needs_card() -> CenterError {
        error(
            403,
            "CONSENT_NEEDS_CARD",
            Some("consent"),
            "a visual check cannot open drug, checkup or diagnosis information".into(),
            "目視確認では薬剤情報・特定健診情報・診療情報の提供に同意できません。患者さんご本人に暗証番号または顔認証で確認していただいてください。",
            "Drug, checkup and diagnosis consents need the PIN or face path; a visual check carries limit and specific_disease only.",
        )
    }

    pub fn consent_time_invalid(detail: String) -> CenterError {
        error(
            400,
            "CONSENT_TIME_INVALID",
            Some("chosen_at"),
            detail,
            "カードの確認に失敗しました。業者に連絡してください。",
            "chosen_at is sent only with a recorded visual check: its counter time, YYYYMMDDHHmmss, not in the future, within 31 days.",
        )
    }

    pub fn reader_owned_elsewhere(reader: &str) -> CenterError {
        error(
            409,
            "READER_OWNED_ELSEWHERE",
            Some("reader_id"),
            format!("reader {reader:?} is registered to another institution; nothing was changed"),
            "このカードリーダーは別の医療機関に登録されています。業者に連絡してください。",
            "A reader belongs to the institution that registered it first; choose another reader_id. The attempt is audited.",
        )
    }

    pub fn report_unknown() -> CenterError {
        error(
            404,
            "LINK_REPORT_UNKNOWN",
            Some("report_id"),
            "no such wrong-link report".into(),
            "該当する報告がありません。",
            "List open reports with POST /v1/insurer/link-reports.",
        )
    }

    pub fn report_other_insurer() -> CenterError {
        error(
            403,
            "LINK_REPORT_OTHER_INSURER",
            Some("report_id"),
            "the report concerns a person who holds no coverage of this insurer".into(),
            "この報告は他の保険者の加入者に関するものです。",
            "Only an insurer of the person reviews a report about them.",
        )
    }

    pub fn report_closed() -> CenterError {
        error(
            409,
            "LINK_REPORT_CLOSED",
            Some("report_id"),
            "the report was already reviewed".into(),
            "この報告は確認済みです。",
            "A report is reviewed once.",
        )
    }

    pub fn challenge_unknown() -> CenterError {
        error(
            409,
            "CHALLENGE_UNKNOWN",
            Some("proof.challenge"),
            "the challenge was never issued or was already used (a replay)".into(),
            "カードの読み取りをやり直してください。",
            "Each challenge is single-use: request a new one from /v1/card/challenge for every card reading.",
        )
    }

    pub fn challenge_expired() -> CenterError {
        error(
            409,
            "CHALLENGE_EXPIRED",
            Some("proof.challenge"),
            "the challenge is older than 60 seconds".into(),
            "読み取りに時間がかかりすぎました。カードを置き直してください。",
            "Request the challenge right before the card signs; it expires after 60 seconds.",
        )
    }

    pub fn challenge_other_institution() -> CenterError {
        error(
            409,
            "CHALLENGE_OTHER_INSTITUTION",
            Some("proof.challenge"),
            "the challenge was issued to another institution".into(),
            "カードの読み取りをやり直してください。",
            "A challenge is bound to the institution that requested it.",
        )
    }

    pub fn certificate_malformed(detail: String) -> CenterError {
        error(
            400,
            "CARD_CERTIFICATE_MALFORMED",
            Some("proof.certificate"),
            detail,
            "カードを読み取れませんでした。カードを置き直してください。",
            "Send the card's user certificate as PEM.",
        )
    }

    pub fn certificate_unknown_issuer() -> CenterError {
        error(
            403,
            "CARD_CERTIFICATE_UNKNOWN_ISSUER",
            Some("proof.certificate"),
            "the certificate was not issued by the card CA".into(),
            "このカードは確認できません。保険証・資格確認書の番号で確認してください。",
            "The certificate does not chain to the card CA the center trusts.",
        )
    }

    pub fn certificate_revoked(reason: &str) -> CenterError {
        error(
            403,
            "CARD_CERTIFICATE_REVOKED",
            Some("proof.certificate"),
            format!("the card's certificate is revoked ({reason})"),
            "このカードの電子証明書は失効しています（紛失・盗難の届出または更新済み）。お持ちの資格確認書・保険証で確認し、市区町村の窓口での手続きをご案内ください。",
            "Revoked certificates never verify; the holder needs a new card or renewed certificate.",
        )
    }

    pub fn certificate_expired(on: &str) -> CenterError {
        error(
            403,
            "CARD_CERTIFICATE_EXPIRED",
            Some("proof.certificate"),
            format!("the card's certificate expired on {on}"),
            "このカードの電子証明書は有効期限が切れています。資格確認書・保険証で確認し、市区町村の窓口で更新するようご案内ください。",
            "Expired certificates never verify; the holder must renew at the municipal office.",
        )
    }

    pub fn certificate_expired_grace_only(on: &str, grace_until: &str) -> CenterError {
        error(
            403,
            "CARD_CERTIFICATE_EXPIRED",
            Some("proof.certificate"),
            format!("the card's certificate expired on {on}; until {grace_until} it confirms eligibility only"),
            "このカードの電子証明書は有効期限が切れています。有効期限後の一定期間は資格確認のみ可能で、この手続きはできません。市区町村の窓口で更新するようご案内ください。",
            "An expired certificate confirms eligibility only during its grace; linking, reports and consent withdrawal need a renewed one.",
        )
    }

    pub fn signature_invalid(what: &str) -> CenterError {
        error(
            403,
            "CARD_SIGNATURE_INVALID",
            Some("proof"),
            format!("the {what} does not verify"),
            "カードの確認に失敗しました。カードを置き直してください。続く場合は業者に連絡してください。",
            "The signature does not match the challenge and key; check the reader software.",
        )
    }

    /// 初回登録 by face for a card that has a PIN: its holder's own signature is asked for.
    pub fn link_needs_pin() -> CenterError {
        error(
            409,
            "CARD_LINK_NEEDS_PIN",
            Some("proof.method"),
            "初回登録 by face is for cards issued without a PIN (顔認証マイナンバーカード); this card has one".into(),
            "このカードの利用登録は暗証番号で行ってください（顔認証での登録は暗証番号のないカードのみです）。",
            "Register with the PIN path; the face path registers only cards the card authority issued without a PIN.",
        )
    }

    pub fn proof_incomplete(detail: &str) -> CenterError {
        error(
            400,
            "CARD_PROOF_INCOMPLETE",
            Some("proof"),
            detail.to_string(),
            "カードの確認に失敗しました。業者に連絡してください。",
            "The PIN path needs card_signature; the face and visual paths need a reader attestation.",
        )
    }

    pub fn reader_not_registered(reader: &str) -> CenterError {
        error(
            403,
            "READER_NOT_REGISTERED",
            Some("proof.attestation.reader_id"),
            format!("reader {reader:?} is not registered to this institution"),
            "このカードリーダーはこの医療機関に登録されていません。業者に連絡してください。",
            "Register the reader's device key with POST /v1/readers using this institution's certificate.",
        )
    }

    pub fn face_mismatch() -> CenterError {
        error(
            403,
            "FACE_MISMATCH",
            Some("proof.attestation.result"),
            "the reader reports that the face does not match the card".into(),
            "顔認証ができませんでした。暗証番号で確認するか、職員が目視で確認してください。",
            "Offer the PIN or visual path.",
        )
    }

    pub fn not_linked() -> CenterError {
        error(
            404,
            "CARD_NOT_LINKED",
            Some("proof.certificate"),
            "no coverage is linked to this card (初回登録 not done)".into(),
            "このカードは健康保険証として利用登録されていません。その場で利用登録するか、資格確認書・保険証で確認してください。",
            "The card needs insurance-use registration (POST /v1/card/link) first.",
        )
    }

    pub fn link_flagged() -> CenterError {
        error(
            409,
            "CARD_LINK_FLAGGED",
            Some("proof.certificate"),
            "the card's link is flagged as possibly wrong and awaits review".into(),
            "このカードのひも付けは誤りの疑いで確認中です。資格確認書・保険証で確認してください。",
            "The holder flagged the link; the insurer must review it (POST /v1/insurer/link-review) before the card verifies again.",
        )
    }

    pub fn already_linked() -> CenterError {
        error(
            409,
            "CARD_ALREADY_LINKED",
            Some("proof.certificate"),
            "this card is already linked to another person".into(),
            "このカードは既に別の資格にひも付いています。保険者に確認してください。",
            "Report the link (POST /v1/card/report) if it is wrong.",
        )
    }

    pub fn attributes_mismatch(fields: &[&str]) -> CenterError {
        error(
            409,
            "CARD_ATTRIBUTES_MISMATCH",
            None,
            format!("the card authority's {} differ from the insurer's record; nothing was linked", fields.join(", ")),
            "カード発行者の登録事項（氏名・カナ・生年月日・性別・住所）と保険者の登録が一致しないため、利用登録できません。資格確認書・保険証で確認し、保険者に登録内容の確認を依頼するようご案内ください。",
            "The card CA's attested attributes and the insurer's member record disagree on the fields named; the link was refused and audited.",
        )
    }

    pub fn no_such_coverage() -> CenterError {
        error(
            404,
            "LINK_NO_SUCH_COVERAGE",
            None,
            "no coverage carries these numbers".into(),
            "この番号の資格は登録されていません。保険証・資格確認書の番号を確かめてください。",
            "Check the numbers; a newly acquired coverage may not be registered yet.",
        )
    }

    pub fn no_coverage_for_person() -> CenterError {
        error(
            404,
            "NO_COVERAGE_FOR_CARD",
            None,
            "the card's person holds no coverage".into(),
            "このカードの方の資格情報がありません。保険証・資格確認書で確認してください。",
            "The linked person has no coverage in the register.",
        )
    }
}

pub fn audit_unavailable(detail: String) -> CenterError {
    error(
        503,
        "AUDIT_UNAVAILABLE",
        None,
        detail,
        "センターで一時的な障害が起きています。保険証・資格確認書を目視で確認して受付を続け、後で再照会してください。",
        "The audit log could not record the access, so it was refused; check the center's disk and log.",
    )
}

/// Refusals of medical-information views.
pub mod medical {
    use super::{CenterError, error};

    pub fn consent_not_given() -> CenterError {
        error(
            403,
            "CONSENT_NOT_GIVEN",
            Some("consent"),
            "no consent for this scope from this patient to this institution (ConsFlg 0)".into(),
            "患者さんがこの情報の閲覧に同意していません。閲覧するには、カードリーダーで同意を選んでもらってください。",
            "Medical information is shown only under a consent given at the card reader.",
        )
    }

    pub fn consent_expired(until: &str) -> CenterError {
        error(
            403,
            "CONSENT_EXPIRED",
            Some("consent"),
            format!("the consent for this scope expired at {until} (ConsFlg 2)"),
            "閲覧の同意の有効期限（24時間）が切れています。改めてカードリーダーで同意を選んでもらってください。",
            "A consent lets the institution view for 24 hours; ask for a new one at the reader.",
        )
    }

    pub fn branch_needed() -> CenterError {
        error(
            400,
            "BRANCH_NEEDED",
            Some("branch"),
            "several people share these numbers; the branch number decides".into(),
            "同じ番号の方が複数います。枝番（2桁）を入力してください。",
            "Send the 2-digit branch number.",
        )
    }
}
