//! Code tables of the Onshi interface (別紙5-1 業務コード仕様, reconstructed in DOMAIN.md §2) as
//! types. Each table maps to and from its wire code and carries the Japanese label staff see.

use crate::error::FieldError;

macro_rules! code_table {
    (
        $(#[$meta:meta])*
        $name:ident ($table:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, $label:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value of the table, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code as written in the files and the API.
            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code,)+ }
            }

            /// The label reception staff read (Japanese).
            pub fn label_ja(self) -> &'static str {
                match self { $($name::$variant => $label,)+ }
            }

            /// Reads a code, naming the table in the refusal.
            pub fn parse(text: &str) -> Result<$name, FieldError> {
                match text.trim() {
                    $($code => Ok($name::$variant),)+
                    _ => Err(FieldError::new(
                        concat!("is not a code of ", $table, " (", $(concat!($code, " "),)+ ")"),
                        text,
                    )),
                }
            }
        }
    };
}

code_table! {
    /// 資格有効性 (OQSCD006): the answer to "is this coverage valid on the date of care?".
    QualificationValidity ("OQSCD006 QualificationValidity") {
        /// 有効.
        Valid = "1", "有効";
        /// 無効: the coverage had ended (or not begun) on the date of care.
        Invalid = "2", "無効";
        /// 無効（新しい資格あり）: ended, and the same person holds a newer coverage.
        InvalidNewerExists = "3", "無効（新しい資格あり）";
        /// 該当資格なし: no coverage with these card numbers (and birth date).
        NoSuchCoverage = "4", "該当資格なし";
        /// 複数該当: the numbers fit several people (the branch was not given).
        SeveralMatches = "5", "複数該当";
        /// 有効（未登録）: 医療扶助 only — a valid recipient with no 医療券 registered for the
        /// institution on that day: in a month's list one the office designated; a card check
        /// also says whether the office designated the institution at all.
        ValidUnregistered = "6", "有効（未登録）";
    }
}

code_table! {
    /// 本人・家族の別 (OQSCD009).
    Relationship ("OQSCD009 PersonalFamilyClassification") {
        /// 本人 (the insured person).
        Insured = "1", "本人";
        /// 家族 (a dependant).
        Dependant = "2", "家族";
    }
}

code_table! {
    /// 性別 (OQSCD007).
    Sex ("OQSCD007 Sex") {
        Male = "1", "男";
        Female = "2", "女";
        /// 未設定.
        Unset = "3", "未設定";
    }
}

code_table! {
    /// 被保険者証区分 (OQSCD010). Code 05 is read as 被保険者資格証明書 as in [MTS].
    CardClassification ("OQSCD010 InsuredCardClassification") {
        General = "01", "一般";
        Retired = "02", "退職";
        ShortTermGeneral = "03", "短期（一般）";
        ShortTermRetired = "04", "短期（退職）";
        QualificationCertificate = "05", "被保険者資格証明書";
        SpecialRetired = "06", "特例退職";
        SelfDefenseForces = "07", "自衛官";
    }
}

code_table! {
    /// 喪失事由 (OQSCD008).
    ReasonOfLoss ("OQSCD008 ReasonOfLoss") {
        Death = "01", "死亡";
        WelfareStarted = "02", "生活保護受給開始";
        /// Acquired another medical insurance (job change, turning 75, becoming a dependant).
        OtherInsuranceAcquired = "03", "医療保険等の資格取得";
        Other = "99", "その他";
    }
}

code_table! {
    /// 限度額適用認定証区分 (OQSCD011).
    LimitCertificateClassification ("OQSCD011 LimitApplicationCertificateClassification") {
        Limit = "01", "限度額適用認定証";
        LimitAndStandardReduction = "02", "限度額適用・標準負担額減額認定証";
        StandardReduction = "03", "標準負担額減額認定証";
    }
}

code_table! {
    /// 特定疾病区分 (OQSCD013).
    SpecificDisease ("OQSCD013 SpecificDiseasesDiseaseCategory") {
        /// 人工透析を要する慢性腎不全.
        ChronicRenalFailureDialysis = "1", "人工透析を要する慢性腎不全";
        /// 先天性血液凝固因子障害.
        CongenitalCoagulationDisorder = "2", "先天性血液凝固因子障害";
        /// 血液製剤に起因するHIV感染症.
        BloodProductHiv = "3", "血液製剤由来HIV";
    }
}

code_table! {
    /// 同意フラグ for viewing consents (OQSCD016), also used for the limit-information flag.
    ConsentFlag ("OQSCD016 consent flag") {
        NotGiven = "0", "同意なし";
        Given = "1", "同意あり";
        Expired = "2", "同意有効期限切れ";
        CannotObtain = "3", "同意取得困難";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_name_the_table() {
        for value in QualificationValidity::ALL {
            assert_eq!(QualificationValidity::parse(value.code()).unwrap(), *value);
        }
        let refusal = QualificationValidity::parse("7").unwrap_err();
        assert!(refusal.reason.contains("OQSCD006"), "{refusal}");
        assert_eq!(CardClassification::parse("05").unwrap().label_ja(), "被保険者資格証明書");
        assert!(ReasonOfLoss::parse("3").is_err(), "codes are two digits");
    }
}
