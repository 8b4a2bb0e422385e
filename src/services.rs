//! Every service, built once at start-up and shared as `Arc<Services>`.

use std::sync::Arc;

use crate::admin::audit::Audit;
use crate::config::Config;
use crate::e2ee::backup::Backup;
use crate::e2ee::keys::Keys;
use crate::e2ee::to_device::ToDevice;
use crate::error::Result;
use crate::federation::keys::ServerKeys;
use crate::identity::SignIn;
use crate::identity::login_tokens::LoginTokens;
use crate::identity::sso::Sso;
use crate::media::Media;
use crate::outbound::Outbound;
use crate::presence::Presence;
use crate::preview::Previews;
use crate::push::pushers::Pushers;
use crate::push::rules::PushRules;
use crate::rate_limit::RateLimiter;
use crate::rooms::alias::Aliases;
use crate::rooms::directory::Directory;
use crate::rooms::receipts::Receipts;
use crate::rooms::reports::Reports;
use crate::rooms::timeline::Timeline;
use crate::search::Search;
use crate::storage::Store;
use crate::sync::sliding::Connections;
use crate::typing::Typing;
use crate::users::account_data::AccountData;
use crate::users::accounts::Accounts;
use crate::users::filters::Filters;
use crate::users::profiles::Profiles;
use crate::users::sessions::Sessions;
use crate::users::uia::Uia;
use crate::watchers::Watchers;

pub struct Services {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub audit: Arc<Audit>,
    pub appservices: Arc<crate::appservice::Appservices>,
    pub room_deletions: crate::admin::rooms::Deletions,
    pub server_keys: Arc<ServerKeys>,
    pub timeline: Timeline,
    pub watchers: Arc<Watchers>,
    pub aliases: Aliases,
    pub directory: Directory,
    pub reports: Reports,
    pub receipts: Receipts,
    pub typing: Typing,
    pub accounts: Accounts,
    pub sessions: Sessions,
    pub profiles: Profiles,
    pub account_data: Arc<AccountData>,
    pub filters: Filters,
    pub push_rules: Arc<PushRules>,
    pub pushers: Arc<Pushers>,
    pub presence: Presence,
    pub uia: Uia,
    pub signin: SignIn,
    pub login_tokens: LoginTokens,
    pub registration_tokens: crate::users::registration_tokens::RegistrationTokens,
    pub sso: Sso,
    pub keys: Keys,
    pub to_device: ToDevice,
    pub backup: Backup,
    pub media: Media,
    pub outbound: Outbound,
    pub federation: crate::federation::Federation,
    pub previews: Previews,
    pub sliding: Connections,
    pub search: Search,
    pub login_limiter: RateLimiter,
    pub registration_limiter: RateLimiter,
}

impl Services {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Result<Self> {
        let watchers = Arc::new(Watchers::default());
        let audit = Arc::new(Audit::new(store.clone())?);
        let appservices = Arc::new(crate::appservice::Appservices::load(&config)?);
        let account_data = Arc::new(AccountData::new(store.clone(), watchers.clone()));
        let server_keys = Arc::new(ServerKeys::load_or_generate(
            &store,
            config.server_name.clone(),
        )?);
        let push_rules = Arc::new(PushRules::new(account_data.clone()));
        let pushers = Arc::new(Pushers::new(
            store.clone(),
            config.push.max_pushers_per_user,
        )?);
        let to_device = ToDevice::new(store.clone(), watchers.clone(), appservices.clone());
        let search = Search::new(&config, &watchers)?;
        let outbound = Outbound::new(&config.outbound)?;
        let federation =
            crate::federation::Federation::new(&config, store.clone(), server_keys.clone())?;
        Ok(Self {
            search,
            timeline: Timeline::new(
                store.clone(),
                server_keys.clone(),
                config.server_name.clone(),
                watchers.clone(),
                push_rules.clone(),
                pushers.clone(),
                audit.clone(),
                appservices.clone(),
            ),
            watchers,
            server_keys,
            aliases: Aliases::new(store.clone(), config.server_name.clone()),
            directory: Directory::new(store.clone()),
            reports: Reports::new(store.clone()),
            receipts: Receipts::new(store.clone()),
            typing: Typing::default(),
            accounts: Accounts::new(store.clone(), config.server_name.clone(), audit.clone()),
            sessions: Sessions::new(
                store.clone(),
                config.login.refreshable_token_lifetime_ms,
                audit.clone(),
            ),
            profiles: Profiles::new(store.clone()),
            filters: Filters::new(store.clone()),
            push_rules: push_rules.clone(),
            pushers,
            account_data,
            presence: Presence::new(&config.presence),
            uia: Uia::default(),
            signin: SignIn::new(&config)?,
            login_tokens: LoginTokens::new(store.clone()),
            registration_tokens: crate::users::registration_tokens::RegistrationTokens::new(
                store.clone(),
            ),
            sso: Sso::new(&config)?,
            keys: Keys::new(store.clone()),
            to_device,
            backup: Backup::new(store.clone()),
            media: Media::new(&config, store.clone())?,
            outbound,
            federation,
            previews: Previews::new(&config.url_preview),
            sliding: Connections::default(),
            login_limiter: RateLimiter::new(config.rate_limits.login),
            registration_limiter: RateLimiter::new(config.rate_limits.registration),
            audit,
            appservices,
            room_deletions: Default::default(),
            store,
            config,
        })
    }
}
