//! The conversation with a remote: greeting, listing references, and fetching one commit with
//! depth 1, on gitoxide's protocol layer (`gix::protocol`) rather than its `Remote` API.
//!
//! The reason is the pack. gitoxide's `Remote` fetch stores a received pack with its own bundle
//! writer, which memory-maps the whole pack and inflates every object to index it: a fetch cost
//! as much memory as the repository. Driving the protocol ourselves hands the pack stream to
//! [`super::pack::store_pack`], which keeps only what delta resolution needs. What is asked for
//! is also exactly one commit, so the negotiation is ours too: one `want`, and as `have`s the
//! commit the cache already holds.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix::protocol::fetch::negotiate::{Action, Round, one_round};
use gix::protocol::fetch::{Arguments, Negotiate, Response};
use gix::protocol::handshake::Ref;

use super::transport::{Authenticate, Diagnostics, Link, LinkTransport};

/// How this client names itself to servers.
fn user_agent() -> gix::protocol::command::Feature {
    (
        "agent",
        Some(gix::protocol::agent(concat!(
            "gitops-source/",
            env!("CARGO_PKG_VERSION")
        ))),
    )
}

/// What stores the pack a fetch receives: it reads the stream to its end and writes the pack and
/// its index into the pack directory it is given.
pub(super) type StorePack<'a> = Box<
    dyn FnOnce(
            &mut dyn std::io::BufRead,
            &Path,
            &mut dyn gix::progress::DynNestedProgress,
            &AtomicBool,
        ) -> gix::Result<()>
        + 'a,
>;

/// A connection whose handshake is done.
pub(super) struct Session {
    transport: LinkTransport,
    handshake: gix::protocol::Handshake,
    diagnostics: Diagnostics,
}

impl Session {
    /// Greet the remote at the other end of `link` (answering a request for credentials with
    /// the link's own answer).
    pub(super) fn greet(link: Link) -> Result<Self, (gix::Error, Diagnostics)> {
        let Link {
            mut transport,
            authenticate,
            diagnostics,
        } = link;
        let mut authenticate: Authenticate = authenticate;
        let handshake = gix::protocol::handshake(
            &mut transport.inner,
            gix::protocol::transport::Service::UploadPack,
            &mut authenticate,
            Vec::new(),
            &mut gix::progress::Discard,
        );
        match handshake {
            Ok(handshake) => Ok(Self {
                transport,
                handshake,
                diagnostics,
            }),
            Err(error) => Err((error, diagnostics)),
        }
    }

    /// What explains this connection's failures.
    pub(super) fn diagnostics(&self) -> &Diagnostics {
        &self.diagnostics
    }

    /// The remote's references that `refspec` (a fetch refspec) selects; protocol v2 servers are
    /// asked for those only.
    pub(super) fn list_refs(&mut self, refspec: &str) -> Result<Vec<Ref>, gix::Error> {
        let spec = gix::refspec::parse(refspec.into(), gix::refspec::parse::Operation::Fetch)
            .map_err(gix::Error::from_error)?
            .to_owned();
        let ref_map = self
            .handshake
            .prepare_lsrefs_or_extract_refmap(
                user_agent(),
                true,
                gix::protocol::fetch::refmap::init::Context {
                    fetch_refspecs: vec![spec],
                    extra_refspecs: Vec::new(),
                },
            )?
            .fetch_blocking(gix::progress::Discard, &mut self.transport.inner, false)?;
        Ok(ref_map.remote_refs)
    }

    /// Fetch `want` with depth 1 into `repo`, the pack written by `store`, the commits the cache
    /// holds already sent as `have`s. The shallow boundary in `repo` is updated.
    pub(super) fn fetch<P>(
        mut self,
        repo: &gix::Repository,
        want: ObjectId,
        store: StorePack<'_>,
        progress: P,
        interrupt: &AtomicBool,
    ) -> Result<(), (gix::Error, Diagnostics)>
    where
        P: gix::progress::NestedProgress,
        P::SubProgress: 'static,
    {
        let outcome = self.exchange(repo, want, store, progress, interrupt);
        let Self {
            mut transport,
            diagnostics,
            ..
        } = self;
        match outcome {
            Ok(()) => {
                // The server expects nothing more; a failure to say so changes nothing here.
                transport.indicate_end_of_interaction().ok();
                Ok(())
            }
            Err(error) => Err((error, diagnostics)),
        }
    }

    fn exchange<P>(
        &mut self,
        repo: &gix::Repository,
        want: ObjectId,
        store: StorePack<'_>,
        progress: P,
        interrupt: &AtomicBool,
    ) -> gix::Result<()>
    where
        P: gix::progress::NestedProgress,
        P::SubProgress: 'static,
    {
        let pack_dir = repo.objects.store_ref().path().join("pack");
        let mut negotiate = WantOne {
            want,
            haves: held_commits(repo),
        };
        let depth = std::num::NonZeroU32::new(1).expect("1 is not zero");
        gix::protocol::fetch(
            &mut negotiate,
            |pack, progress, interrupt| {
                store(pack, &pack_dir, progress, interrupt)?;
                Ok(true)
            },
            progress,
            interrupt,
            gix::protocol::fetch::Context {
                handshake: &mut self.handshake,
                transport: &mut self.transport.inner,
                user_agent: user_agent(),
                trace_packetlines: false,
            },
            gix::protocol::fetch::Options {
                shallow_file: repo.shallow_file()?,
                shallow: &gix::protocol::fetch::Shallow::DepthAtRemote(depth),
                tags: gix::protocol::fetch::Tags::None,
                reject_shallow_remote: false,
            },
        )?;
        Ok(())
    }
}

/// The commits the cache holds at its references (the last commit fetched), which the server
/// need not send again.
fn held_commits(repo: &gix::Repository) -> Vec<ObjectId> {
    let Ok(references) = repo.references() else {
        return Vec::new();
    };
    let Ok(all) = references.all() else {
        return Vec::new();
    };
    let mut held: Vec<ObjectId> = all
        .filter_map(Result::ok)
        .filter_map(|mut reference| reference.peel_to_id().ok().map(|id| id.detach()))
        .filter(|id| repo.has_object(id))
        .collect();
    held.sort_unstable();
    held.dedup();
    held
}

/// The negotiation of a depth-1 fetch of one object: it is wanted, the held commits are offered
/// in a single round, and the server is told that is all.
struct WantOne {
    want: ObjectId,
    haves: Vec<ObjectId>,
}

impl Negotiate for WantOne {
    fn mark_complete_and_common_ref(&mut self) -> gix::Result<Action> {
        // The caller fetches only what the cache does not hold.
        Ok(Action::MustNegotiate {
            remote_ref_target_known: Vec::new(),
        })
    }

    fn add_wants(&mut self, arguments: &mut Arguments, _remote_ref_target_known: &[bool]) -> bool {
        arguments.want(self.want);
        true
    }

    fn one_round(
        &mut self,
        _state: &mut one_round::State,
        arguments: &mut Arguments,
        _previous_response: Option<&Response>,
    ) -> gix::Result<(Round, bool)> {
        for have in &self.haves {
            arguments.have(have);
        }
        let sent = self.haves.len();
        let round = Round {
            haves_sent: sent,
            in_vain: sent,
            haves_to_send: sent,
            previous_response_had_at_least_one_in_common: false,
        };
        Ok((round, true))
    }
}
