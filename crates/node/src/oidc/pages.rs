//! The hosted pages: sign-in, sign-up, password recovery, one-time code
//! and link, done, logout and error (askama
//! templates under `crates/node/templates`, HTML-escaped), branded per
//! client, in English or German (`ui_locales`, then `Accept-Language`, then
//! the client's default), usable without JavaScript, with the headers every
//! page carries: a strict CSP (a per-response nonce for the one style
//! block, `frame-ancestors 'none'`, forms only to this service and the
//! app's redirect origin), no framing, no caching, no referrer.

use askama::Template;
use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use domicile_core::clients::{Branding, LOCALES};

/// The words of the pages in one language.
pub struct Texts {
    pub lang: &'static str,
    pub sign_in_title: &'static str,
    pub sign_in_heading: &'static str,
    pub email: &'static str,
    /// The recovery page's field where codes can also go by text.
    pub email_or_phone: &'static str,
    /// A texted code cannot complete a sign-in that needs a verified email.
    pub verify_email_first: &'static str,
    pub password: &'static str,
    pub sign_in_button: &'static str,
    pub residency_note: &'static str,
    pub error_title: &'static str,
    pub error_heading: &'static str,
    pub error_note: &'static str,
    pub terms: &'static str,
    pub privacy: &'static str,
    pub bad_credentials: &'static str,
    pub bad_input: &'static str,
    pub busy: &'static str,
    pub failed: &'static str,
    pub forged: &'static str,
    pub no_account: &'static str,
    pub have_account: &'static str,
    pub sign_up_title: &'static str,
    pub sign_up_heading: &'static str,
    pub sign_up_button: &'static str,
    pub new_password: &'static str,
    pub password_rule: &'static str,
    pub data_lives_in: &'static str,
    pub choose_region: &'static str,
    pub domain_rule: &'static str,
    pub email_taken: &'static str,
    pub sign_up_bad_input: &'static str,
    pub sign_out_title: &'static str,
    pub sign_out_heading: &'static str,
    pub sign_out_question: &'static str,
    pub sign_out_button: &'static str,
    pub signed_out_heading: &'static str,
    pub signed_out_note: &'static str,
    pub forgot_password: &'static str,
    pub email_code_button: &'static str,
    pub recover_title: &'static str,
    pub recover_heading: &'static str,
    pub recover_note: &'static str,
    pub send_code_button: &'static str,
    pub back_to_sign_in: &'static str,
    pub code_title: &'static str,
    pub code_heading_reset: &'static str,
    pub code_heading_sign_in: &'static str,
    pub code_heading_verify: &'static str,
    pub code_sent_if_exists: &'static str,
    pub code_sent: &'static str,
    pub code_label: &'static str,
    pub code_button: &'static str,
    pub reset_button: &'static str,
    pub code_refused: &'static str,
    pub code_malformed: &'static str,
    pub throttled: &'static str,
    pub not_offered: &'static str,
    pub enter_email: &'static str,
    pub link_note: &'static str,
    pub link_refused: &'static str,
    pub verified_heading: &'static str,
    pub reset_done_heading: &'static str,
    pub done_note: &'static str,
    pub code_heading_change: &'static str,
    pub email_changed_heading: &'static str,
    pub mfa_title: &'static str,
    pub mfa_heading: &'static str,
    pub mfa_note: &'static str,
    pub mfa_code_label: &'static str,
    pub mfa_button: &'static str,
    pub mfa_recovery_note: &'static str,
    pub check_title: &'static str,
    pub mfa_passkey_button: &'static str,
    pub mfa_passkey_note: &'static str,
    pub mfa_recovery_label: &'static str,
    pub check_code_label: &'static str,
    pub step_up_needed: &'static str,
    pub passkeys_heading: &'static str,
    pub passkeys_none: &'static str,
    pub passkey_name_label: &'static str,
    pub passkey_rename_label: &'static str,
    pub passkey_add_button: &'static str,
    pub passkey_rename_button: &'static str,
    pub passkey_remove_button: &'static str,
    pub passkey_added: &'static str,
    pub passkey_removed: &'static str,
    pub passkey_renamed: &'static str,
    pub passkey_refused: &'static str,
    pub passkey_needs_script: &'static str,
    pub passkey_sign_in_button: &'static str,
    pub passkey_sign_in_refused: &'static str,
    pub passkey_verify_first: &'static str,
    pub check_note: &'static str,
    pub mfa_wrong: &'static str,
    pub mfa_expired: &'static str,
    pub mfa_unavailable: &'static str,
    pub mfa_setup_note: &'static str,
    pub continue_sign_in: &'static str,
    pub account_title: &'static str,
    pub account_heading: &'static str,
    pub account_sign_in_first: &'static str,
    pub recovery_codes_heading: &'static str,
    pub recovery_codes_note: &'static str,
    pub enrol_heading: &'static str,
    pub enrol_note: &'static str,
    pub enrol_qr_label: &'static str,
    pub enrol_manual: &'static str,
    pub enrol_link: &'static str,
    pub enrol_code_label: &'static str,
    pub enrol_confirm_button: &'static str,
    pub enrol_button: &'static str,
    pub enrol_wrong: &'static str,
    pub totp_on: &'static str,
    pub totp_off: &'static str,
    pub totp_removed: &'static str,
    pub recovery_left: &'static str,
    pub recovery_regenerate_button: &'static str,
    pub totp_remove_button: &'static str,
    pub wrong_password: &'static str,
}

pub const EN: Texts = Texts {
    lang: "en",
    sign_in_title: "Sign in",
    sign_in_heading: "Sign in to",
    email: "Email address",
    email_or_phone: "Email address or phone number (+country code)",
    verify_email_first: "This app needs a verified email address. Sign in with your email address to confirm it.",
    password: "Password",
    sign_in_button: "Sign in",
    residency_note: "Your account is kept in the region where it was created; signing in here does not move it.",
    error_title: "Something went wrong",
    error_heading: "This sign-in cannot continue",
    error_note: "Go back to the app and start again.",
    terms: "Terms",
    privacy: "Privacy",
    bad_credentials: "The email address or password is not right.",
    bad_input: "Enter a valid email address and your password.",
    busy: "Too many sign-ins at once. Please try again in a moment.",
    failed: "The sign-in failed on our side. Please try again.",
    forged: "This form is no longer valid. Go back to the app and start again.",
    no_account: "No account yet? Create one",
    have_account: "Already have an account? Sign in",
    sign_up_title: "Create an account",
    sign_up_heading: "Create your account for",
    sign_up_button: "Create account",
    new_password: "Choose a password",
    password_rule: "At least 8 characters.",
    data_lives_in: "Your account and its data will be kept in",
    choose_region: "Where your account and its data are kept",
    domain_rule: "If your email's domain belongs to an organisation that keeps its accounts in a particular region, that region is used.",
    email_taken: "An account with this email address already exists. Sign in instead.",
    sign_up_bad_input: "Enter a valid email address and a password of at least 8 characters.",
    sign_out_title: "Sign out",
    sign_out_heading: "Sign out of",
    sign_out_question: "Do you want to sign out? You will be signed out of every app you signed in to here with this browser.",
    sign_out_button: "Sign out",
    signed_out_heading: "You are signed out",
    signed_out_note: "You can close this window, or go back to the app.",
    forgot_password: "Forgot your password?",
    email_code_button: "Email me a sign-in code instead",
    recover_title: "Reset your password",
    recover_heading: "Reset your password for",
    recover_note: "Enter the email address of your account. We will send it a code to choose a new password.",
    send_code_button: "Send code",
    back_to_sign_in: "Back to sign-in",
    code_title: "Enter your code",
    code_heading_reset: "Choose a new password for",
    code_heading_sign_in: "Sign in with a code to",
    code_heading_verify: "Confirm your email address for",
    code_sent_if_exists: "If an account exists for this address, we have sent it a code. It works once, for 15 minutes:",
    code_sent: "We have sent a code to your email address. It works once, for 15 minutes:",
    code_label: "Code from the email",
    code_button: "Continue",
    reset_button: "Set new password",
    code_refused: "The code is not right, or it has expired. Check the email, or ask for a new code.",
    code_malformed: "Enter the 6 digits from the email.",
    throttled: "Too many requests for this address. Please wait a few minutes and try again.",
    not_offered: "This is not available here.",
    enter_email: "Enter a valid email address.",
    link_note: "You opened a link from our email. Continue to use it.",
    link_refused: "This link is no longer valid: it was used already, has expired, or a newer one was sent. Ask for a new one.",
    verified_heading: "Your email address is confirmed",
    reset_done_heading: "Your password was changed",
    done_note: "You can close this window and sign in to the app.",
    code_heading_change: "Confirm your new email address for",
    email_changed_heading: "Your email address was changed",
    mfa_title: "Two-step sign-in",
    mfa_heading: "One more step to sign in to",
    mfa_note: "Enter the six-digit code your authenticator app shows now.",
    mfa_code_label: "Code from the app, or a recovery code",
    mfa_button: "Continue",
    check_title: "Confirm it is you",
    mfa_passkey_button: "Use a passkey",
    mfa_passkey_note: "Use your passkey to continue, or type one of your recovery codes (xxxx-xxxx-xxxx).",
    mfa_recovery_label: "Recovery code",
    check_code_label: "Code from the email",
    passkeys_heading: "Passkeys",
    passkeys_none: "No passkeys yet. A passkey signs you in with your device's screen lock instead of a password.",
    passkey_name_label: "Name of the new passkey",
    passkey_rename_label: "Name",
    passkey_add_button: "Add a passkey",
    passkey_rename_button: "Rename",
    passkey_remove_button: "Remove",
    passkey_added: "The passkey was added.",
    passkey_removed: "The passkey was removed.",
    passkey_renamed: "The passkey was renamed.",
    passkey_refused: "That passkey could not be added. Try again.",
    passkey_needs_script: "Adding a passkey needs JavaScript in this browser.",
    passkey_sign_in_button: "Sign in with a passkey",
    passkey_sign_in_refused: "That passkey was not accepted. Try again, or sign in with your password.",
    passkey_verify_first: "Confirm your email address first: sign in once with your password or an emailed code.",
    step_up_needed: "This change needs a sign-in with your authenticator app or a recovery code. Sign out, sign in again with it, and come back here.",
    check_note: "This sign-in is from a device or place you have not signed in from before, so we emailed you a six-digit code. Enter it here to continue.",
    mfa_recovery_note: "No access to the app? Type one of your recovery codes instead (xxxx-xxxx-xxxx). Each works once.",
    mfa_wrong: "That code is wrong or was already used. Wait for the next one and try again.",
    mfa_expired: "This sign-in has expired or was stopped after too many wrong codes. Sign in again.",
    mfa_unavailable: "This app requires two-step sign-in. Add an authenticator app to your account first.",
    mfa_setup_note: "It takes a minute: scan a code with an authenticator app, type the code it shows, then sign in again with your password and the app.",
    continue_sign_in: "Continue signing in",
    account_title: "Account security",
    account_heading: "Sign-in security",
    account_sign_in_first: "Sign in through your app first, then come back to this page.",
    recovery_codes_heading: "Your recovery codes",
    recovery_codes_note: "Keep these somewhere safe: each one signs you in once if you lose your authenticator app. They are shown only now.",
    enrol_heading: "Set up an authenticator app",
    enrol_note: "Scan this code with your authenticator app, then type the six digits it shows.",
    enrol_qr_label: "QR code for your authenticator app",
    enrol_manual: "Cannot scan? Type this key into the app:",
    enrol_link: "Open in an authenticator app on this device",
    enrol_code_label: "Code from the app",
    enrol_confirm_button: "Turn on two-step sign-in",
    enrol_button: "Set up an authenticator app",
    enrol_wrong: "That is not the app's current code. Check the time on your phone and try the next one.",
    totp_on: "Two-step sign-in is on: an authenticator app is asked for after your password.",
    totp_off: "Two-step sign-in is off. Add an authenticator app to protect your account if your password leaks.",
    totp_removed: "The authenticator app was removed. Your password alone signs you in again.",
    recovery_left: "Recovery codes left:",
    recovery_regenerate_button: "Replace the recovery codes",
    totp_remove_button: "Remove the authenticator app",
    wrong_password: "That is not your password. Nothing was changed.",
};

pub const DE: Texts = Texts {
    lang: "de",
    sign_in_title: "Anmelden",
    sign_in_heading: "Anmelden bei",
    email: "E-Mail-Adresse",
    email_or_phone: "E-Mail-Adresse oder Telefonnummer (+Ländervorwahl)",
    verify_email_first: "Diese App braucht eine bestätigte E-Mail-Adresse. Melden Sie sich mit Ihrer E-Mail-Adresse an, um sie zu bestätigen.",
    password: "Passwort",
    sign_in_button: "Anmelden",
    residency_note: "Ihr Konto bleibt in der Region, in der es angelegt wurde; die Anmeldung hier verschiebt es nicht.",
    error_title: "Etwas ist schiefgelaufen",
    error_heading: "Diese Anmeldung kann nicht fortgesetzt werden",
    error_note: "Kehren Sie zur App zurück und beginnen Sie erneut.",
    terms: "Nutzungsbedingungen",
    privacy: "Datenschutz",
    bad_credentials: "E-Mail-Adresse oder Passwort stimmen nicht.",
    bad_input: "Geben Sie eine gültige E-Mail-Adresse und Ihr Passwort ein.",
    busy: "Gerade melden sich zu viele an. Bitte versuchen Sie es gleich noch einmal.",
    failed: "Die Anmeldung ist bei uns fehlgeschlagen. Bitte versuchen Sie es erneut.",
    forged: "Dieses Formular ist nicht mehr gültig. Kehren Sie zur App zurück und beginnen Sie erneut.",
    no_account: "Noch kein Konto? Jetzt anlegen",
    have_account: "Schon ein Konto? Anmelden",
    sign_up_title: "Konto anlegen",
    sign_up_heading: "Legen Sie Ihr Konto an für",
    sign_up_button: "Konto anlegen",
    new_password: "Passwort wählen",
    password_rule: "Mindestens 8 Zeichen.",
    data_lives_in: "Ihr Konto und seine Daten werden gespeichert in",
    choose_region: "Wo Ihr Konto und seine Daten gespeichert werden",
    domain_rule: "Gehört die Domain Ihrer E-Mail-Adresse zu einer Organisation, die ihre Konten in einer bestimmten Region führt, wird diese Region verwendet.",
    email_taken: "Zu dieser E-Mail-Adresse gibt es schon ein Konto. Melden Sie sich stattdessen an.",
    sign_up_bad_input: "Geben Sie eine gültige E-Mail-Adresse und ein Passwort mit mindestens 8 Zeichen ein.",
    sign_out_title: "Abmelden",
    sign_out_heading: "Abmelden bei",
    sign_out_question: "Möchten Sie sich abmelden? Sie werden von allen Apps abgemeldet, bei denen Sie sich hier mit diesem Browser angemeldet haben.",
    sign_out_button: "Abmelden",
    signed_out_heading: "Sie sind abgemeldet",
    signed_out_note: "Sie können dieses Fenster schließen oder zur App zurückkehren.",
    forgot_password: "Passwort vergessen?",
    email_code_button: "Stattdessen einen Anmeldecode per E-Mail senden",
    recover_title: "Passwort zurücksetzen",
    recover_heading: "Passwort zurücksetzen für",
    recover_note: "Geben Sie die E-Mail-Adresse Ihres Kontos ein. Wir senden einen Code, mit dem Sie ein neues Passwort wählen.",
    send_code_button: "Code senden",
    back_to_sign_in: "Zurück zur Anmeldung",
    code_title: "Code eingeben",
    code_heading_reset: "Neues Passwort wählen für",
    code_heading_sign_in: "Mit Code anmelden bei",
    code_heading_verify: "E-Mail-Adresse bestätigen für",
    code_sent_if_exists: "Falls es zu dieser Adresse ein Konto gibt, haben wir einen Code dorthin gesendet. Er gilt einmal, 15 Minuten lang:",
    code_sent: "Wir haben einen Code an Ihre E-Mail-Adresse gesendet. Er gilt einmal, 15 Minuten lang:",
    code_label: "Code aus der E-Mail",
    code_button: "Weiter",
    reset_button: "Neues Passwort speichern",
    code_refused: "Der Code stimmt nicht oder ist abgelaufen. Prüfen Sie die E-Mail oder fordern Sie einen neuen Code an.",
    code_malformed: "Geben Sie die 6 Ziffern aus der E-Mail ein.",
    throttled: "Zu viele Anfragen für diese Adresse. Bitte warten Sie einige Minuten und versuchen Sie es erneut.",
    not_offered: "Das ist hier nicht verfügbar.",
    enter_email: "Geben Sie eine gültige E-Mail-Adresse ein.",
    link_note: "Sie haben einen Link aus unserer E-Mail geöffnet. Fahren Sie fort, um ihn zu verwenden.",
    link_refused: "Dieser Link ist nicht mehr gültig: Er wurde schon verwendet, ist abgelaufen oder es wurde ein neuerer gesendet. Fordern Sie einen neuen an.",
    verified_heading: "Ihre E-Mail-Adresse ist bestätigt",
    reset_done_heading: "Ihr Passwort wurde geändert",
    done_note: "Sie können dieses Fenster schließen und sich in der App anmelden.",
    code_heading_change: "Neue E-Mail-Adresse bestätigen für",
    email_changed_heading: "Ihre E-Mail-Adresse wurde geändert",
    mfa_title: "Anmeldung in zwei Schritten",
    mfa_heading: "Noch ein Schritt zur Anmeldung bei",
    mfa_note: "Geben Sie den sechsstelligen Code ein, den Ihre Authenticator-App gerade zeigt.",
    mfa_code_label: "Code aus der App oder ein Wiederherstellungscode",
    mfa_button: "Weiter",
    check_title: "Bestätigen Sie, dass Sie es sind",
    mfa_passkey_button: "Passkey verwenden",
    mfa_passkey_note: "Verwenden Sie Ihren Passkey, um fortzufahren, oder geben Sie einen Ihrer Wiederherstellungscodes ein (xxxx-xxxx-xxxx).",
    mfa_recovery_label: "Wiederherstellungscode",
    check_code_label: "Code aus der E-Mail",
    passkeys_heading: "Passkeys",
    passkeys_none: "Noch keine Passkeys. Ein Passkey meldet Sie mit der Bildschirmsperre Ihres Geräts statt mit einem Passwort an.",
    passkey_name_label: "Name des neuen Passkeys",
    passkey_rename_label: "Name",
    passkey_add_button: "Passkey hinzufügen",
    passkey_rename_button: "Umbenennen",
    passkey_remove_button: "Entfernen",
    passkey_added: "Der Passkey wurde hinzugefügt.",
    passkey_removed: "Der Passkey wurde entfernt.",
    passkey_renamed: "Der Passkey wurde umbenannt.",
    passkey_refused: "Dieser Passkey konnte nicht hinzugefügt werden. Versuchen Sie es erneut.",
    passkey_needs_script: "Zum Hinzufügen eines Passkeys braucht dieser Browser JavaScript.",
    passkey_sign_in_button: "Mit einem Passkey anmelden",
    passkey_sign_in_refused: "Dieser Passkey wurde nicht angenommen. Versuchen Sie es erneut oder melden Sie sich mit Ihrem Passwort an.",
    passkey_verify_first: "Bestätigen Sie zuerst Ihre E-Mail-Adresse: Melden Sie sich einmal mit Ihrem Passwort oder einem Code per E-Mail an.",
    step_up_needed: "Diese Änderung erfordert eine Anmeldung mit Ihrer Authenticator-App oder einem Wiederherstellungscode. Melden Sie sich ab, melden Sie sich damit erneut an und kehren Sie hierher zurück.",
    check_note: "Diese Anmeldung kommt von einem Gerät oder Ort, von dem aus Sie sich bisher nicht angemeldet haben. Wir haben Ihnen daher einen sechsstelligen Code per E-Mail geschickt. Geben Sie ihn hier ein, um fortzufahren.",
    mfa_recovery_note: "Kein Zugriff auf die App? Geben Sie stattdessen einen Ihrer Wiederherstellungscodes ein (xxxx-xxxx-xxxx). Jeder gilt einmal.",
    mfa_wrong: "Dieser Code ist falsch oder wurde schon verwendet. Warten Sie auf den nächsten und versuchen Sie es erneut.",
    mfa_expired: "Diese Anmeldung ist abgelaufen oder wurde nach zu vielen falschen Codes beendet. Melden Sie sich erneut an.",
    mfa_unavailable: "Diese App verlangt die Anmeldung in zwei Schritten. Fügen Sie Ihrem Konto zuerst eine Authenticator-App hinzu.",
    mfa_setup_note: "Das dauert eine Minute: Scannen Sie einen Code mit einer Authenticator-App, geben Sie den angezeigten Code ein und melden Sie sich dann erneut mit Passwort und App an.",
    continue_sign_in: "Weiter zur Anmeldung",
    account_title: "Kontosicherheit",
    account_heading: "Sicherheit der Anmeldung",
    account_sign_in_first: "Melden Sie sich zuerst über Ihre App an und kehren Sie dann zu dieser Seite zurück.",
    recovery_codes_heading: "Ihre Wiederherstellungscodes",
    recovery_codes_note: "Bewahren Sie diese sicher auf: Jeder meldet Sie einmal an, falls Sie Ihre Authenticator-App verlieren. Sie werden nur jetzt angezeigt.",
    enrol_heading: "Authenticator-App einrichten",
    enrol_note: "Scannen Sie diesen Code mit Ihrer Authenticator-App und geben Sie die sechs angezeigten Ziffern ein.",
    enrol_qr_label: "QR-Code für Ihre Authenticator-App",
    enrol_manual: "Scannen geht nicht? Geben Sie diesen Schlüssel in die App ein:",
    enrol_link: "In einer Authenticator-App auf diesem Gerät öffnen",
    enrol_code_label: "Code aus der App",
    enrol_confirm_button: "Anmeldung in zwei Schritten einschalten",
    enrol_button: "Authenticator-App einrichten",
    enrol_wrong: "Das ist nicht der aktuelle Code der App. Prüfen Sie die Uhrzeit Ihres Telefons und versuchen Sie den nächsten.",
    totp_on: "Die Anmeldung in zwei Schritten ist eingeschaltet: Nach dem Passwort wird die Authenticator-App abgefragt.",
    totp_off: "Die Anmeldung in zwei Schritten ist aus. Fügen Sie eine Authenticator-App hinzu, um Ihr Konto zu schützen, falls Ihr Passwort bekannt wird.",
    totp_removed: "Die Authenticator-App wurde entfernt. Ihr Passwort allein meldet Sie wieder an.",
    recovery_left: "Verbleibende Wiederherstellungscodes:",
    recovery_regenerate_button: "Wiederherstellungscodes ersetzen",
    totp_remove_button: "Authenticator-App entfernen",
    wrong_password: "Das ist nicht Ihr Passwort. Nichts wurde geändert.",
};

/// The first language we have among `ui_locales`, then `Accept-Language`
/// (in its order, ignoring weights of 0), then `default`.
pub fn texts(
    ui_locales: &[String],
    accept_language: Option<&str>,
    default: &str,
) -> &'static Texts {
    let mut accepted: Vec<(f32, &str)> = accept_language
        .unwrap_or_default()
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            (q > 0.0 && !tag.is_empty()).then_some((q, tag))
        })
        .collect();
    // Highest weight first; equal weights keep their order.
    accepted.sort_by(|a, b| b.0.total_cmp(&a.0));
    ui_locales
        .iter()
        .map(String::as_str)
        .chain(accepted.into_iter().map(|(_, tag)| tag))
        .chain(std::iter::once(default))
        .find_map(|tag| {
            let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
            LOCALES.contains(&primary.as_str()).then_some(primary)
        })
        .map_or(&EN, |l| if l == "de" { &DE } else { &EN })
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignIn<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    pub sealed: &'a str,
    pub csrf: &'a str,
    /// Prefilled (the app's `login_hint`, or what was typed).
    pub email: &'a str,
    pub error: Option<&'a str>,
    /// Offer "forgot your password?" (the region sends email).
    pub recovery: bool,
    /// Offer a sign-in code by email.
    pub passwordless: bool,
}

#[derive(Template)]
#[template(path = "signup.html")]
pub struct SignUp<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    pub sealed: &'a str,
    pub csrf: &'a str,
    pub email: &'a str,
    pub error: Option<&'a str>,
    /// Where the account will be kept unless a domain rule says otherwise
    /// (this region: the edge placed the page here), e.g. "EU (eu)".
    pub here: String,
    pub here_code: &'a str,
    /// The regions the user may choose (code, label); empty when the
    /// federation does not allow a choice.
    pub regions: Vec<(String, String)>,
}

/// The logout page: the question (`confirm`, a form posting back the
/// request's `carried` parameters with a CSRF token), or the answer.
#[derive(Template)]
#[template(path = "logout.html")]
pub struct Logout<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    pub confirm: bool,
    pub csrf: &'a str,
    pub carried: Vec<(&'a str, &'a str)>,
}

/// The page asking for an email address to send a reset code to.
#[derive(Template)]
#[template(path = "recover.html")]
pub struct Recover<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    pub sealed: &'a str,
    pub csrf: &'a str,
    pub email: &'a str,
    /// Whether the region texts codes too: the field takes a number.
    pub phone: bool,
    pub error: Option<&'a str>,
}

/// The page for a code from an email (`purpose`: `reset_password` also
/// asks for the new password), or for a clicked link (`link`: the code's
/// field is the link's secret, hidden).
#[derive(Template)]
#[template(path = "code.html")]
pub struct Code<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    /// The sealed request, empty when the link continues none.
    pub sealed: &'a str,
    pub csrf: &'a str,
    pub purpose: &'a str,
    pub heading: &'a str,
    /// Shown above the field (what was sent).
    pub note: Option<&'a str>,
    pub email: &'a str,
    /// The clicked link's secret, when the page is a link's.
    pub link: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// The second step of a sign-in: a code from the authenticator app, or a
/// recovery code, for the pending sign-in `token`.
#[derive(Template)]
#[template(path = "mfa.html")]
pub struct SecondFactor<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    pub sealed: &'a str,
    pub csrf: &'a str,
    pub token: &'a str,
    pub error: Option<&'a str>,
    /// The code was emailed (a sign-in check), not from an app.
    pub by_email: bool,
    /// The user has an authenticator app (else the field takes a recovery
    /// code only).
    pub has_app: bool,
    /// The user has passkeys: the options the page's script passes to
    /// `navigator.credentials.get`.
    pub passkey_options: Option<&'a str>,
}

/// A new authenticator-app secret as the account page shows it.
pub struct ShownEnrolment {
    /// The QR code of `uri`, as inline SVG markup (made by `qrcode`).
    pub qr_svg: String,
    pub uri: String,
    pub secret: String,
}

/// The account page: its second factors, an enrolment to confirm, and
/// recovery codes shown once.
#[derive(Template)]
#[template(path = "account.html")]
pub struct Account<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
    pub totp: bool,
    pub pending: bool,
    pub recovery_left: usize,
    pub enrolment: Option<ShownEnrolment>,
    pub codes: Vec<String>,
    /// The sealed authorization request the user set a factor up for, to
    /// sign in again to it afterwards.
    pub continue_req: Option<String>,
    pub passkeys: Vec<domicile_identity::passkeys::PasskeyInfo>,
    /// Any second factor (an app or a passkey): the recovery codes' form.
    pub has_factor: bool,
}

/// A sign-in that cannot finish: the app requires two-step sign-in and
/// the user has none; the way to the account page, for `sealed`.
#[derive(Template)]
#[template(path = "setup_required.html")]
pub struct SetupRequired<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    pub sealed: &'a str,
}

/// A journey's last page, when it continues no sign-in.
#[derive(Template)]
#[template(path = "done.html")]
pub struct Done<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    pub heading: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub t: &'static Texts,
    pub brand: &'a Branding,
    pub nonce: &'a str,
    pub message: &'a str,
}

/// The branding of pages that belong to no (known) client.
pub fn neutral_brand(federation: &str) -> Branding {
    Branding::neutral(federation)
}

/// `Content-Security-Policy` for a page whose forms may post here and whose
/// answer may redirect to `redirect_origin`.
fn csp(nonce: &str, redirect_origin: Option<&str>) -> String {
    format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; img-src https: data:; form-action 'self'{}; frame-ancestors 'none'; base-uri 'none'",
        redirect_origin.map(|o| format!(" {o}")).unwrap_or_default()
    )
}

/// A rendered page with the headers every page carries; `cookies` are
/// added as `Set-Cookie`.
pub fn respond(
    status: StatusCode,
    html: Result<String, askama::Error>,
    nonce: &str,
    redirect_origin: Option<&str>,
    cookies: &[String],
) -> Response {
    let body = match html {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "page did not render");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response();
        }
    };
    let mut headers = HeaderMap::new();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.append(name, v);
        }
    };
    set(header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(
        header::CONTENT_SECURITY_POLICY,
        &csp(nonce, redirect_origin),
    );
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::CACHE_CONTROL, "no-store");
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends
    // `Origin: null` with every form, and the forms check their origin.
    set(header::REFERRER_POLICY, "same-origin");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    for c in cookies {
        set(header::SET_COOKIE, c);
    }
    (status, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (ui_locales, Accept-Language, client default) → the page language.
    #[test]
    fn the_language_is_chosen_in_order() {
        for (ui, accept, default, want) in [
            (vec![], None, "en", "en"),
            (vec![], None, "de", "de"),
            (vec!["de".to_owned()], Some("en"), "en", "de"),
            (vec!["fr".to_owned(), "de-AT".to_owned()], None, "en", "de"),
            (vec![], Some("fr-FR, de;q=0.8, en;q=0.5"), "en", "de"),
            (vec![], Some("de;q=0, en"), "de", "en"),
            (vec![], Some("fr, it"), "de", "de"),
            (vec!["ja".to_owned()], Some("zz"), "en", "en"),
        ] {
            assert_eq!(
                texts(&ui, accept, default).lang,
                want,
                "{ui:?} {accept:?} {default}"
            );
        }
    }

    #[test]
    fn pages_escape_what_they_show() {
        let brand = Branding {
            display_name: "<script>x</script>".into(),
            ..neutral_brand("Domicile")
        };
        let html = SignIn {
            t: &EN,
            brand: &brand,
            nonce: "n1",
            sealed: "s\"><b>",
            csrf: "c",
            email: "a@example.org\"><script>",
            error: Some("<i>no</i>"),
            recovery: true,
            passwordless: true,
        }
        .render()
        .unwrap();
        for raw in ["<script>", "\"><b>", "<i>no</i>"] {
            assert!(!html.contains(raw), "{raw} unescaped in {html}");
        }
        assert!(html.contains("<label for=\"email\">Email address</label>"));
        assert!(html.contains("nonce=\"n1\""));
    }

    #[test]
    fn every_page_forbids_framing_and_caching() {
        let r = respond(
            StatusCode::OK,
            Ok("<p>x</p>".into()),
            "abc",
            Some("https://app.example.com"),
            &[],
        );
        let h = r.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("style-src 'nonce-abc'"));
        assert!(csp.contains("form-action 'self' https://app.example.com"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }
}
